#!/bin/sh
# gpuconform: cloud-init user data for a worker node (rendered by the harness). Joins the k3s
# server with the run's token. On GPU pools the GPU Operator's toolkit later configures k3s's
# containerd (the harness sets the toolkit's CONTAINERD_* values for k3s paths).
set -eu

TOKEN='{{TOKEN}}'
SERVER='{{SERVER_URL}}'
# Instance metadata with an IMDSv2 session token (IMDSv1 may be disabled).
IMDS_TOKEN=$(curl -fsS -m 5 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' http://169.254.169.254/latest/api/token || true)
imds() { curl -fsS -m 5 -H "X-aws-ec2-metadata-token: $IMDS_TOKEN" "http://169.254.169.254/latest/meta-data/$1"; }
NODE_IP=$(imds local-ipv4 || hostname -I | cut -d' ' -f1)
# k3s would label every node instance-type=k3s; the checks need the EC2 type.
INSTANCE_TYPE=$(imds instance-type || echo unknown)

curl -sfL https://get.k3s.io | INSTALL_K3S_VERSION='{{K3S_VERSION}}' K3S_TOKEN="$TOKEN" K3S_URL="$SERVER" sh -s - agent \
  --node-ip "$NODE_IP" \
  --node-label "node.kubernetes.io/instance-type=$INSTANCE_TYPE" \
  --node-label 'gpuconform.io/pool={{POOL}}' \
  --node-label 'gpuconform.io/run-id={{RUN_ID}}'
