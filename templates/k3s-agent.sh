#!/bin/sh
# gpuconform: cloud-init user data for a worker node (rendered by the harness). Joins the k3s
# server with the run's token. On GPU pools the GPU Operator's toolkit later configures k3s's
# containerd (the harness sets the toolkit's CONTAINERD_* values for k3s paths).
set -eu

TOKEN='{{TOKEN}}'
SERVER='{{SERVER_URL}}'
NODE_IP=$(curl -fsS -m 5 http://169.254.169.254/latest/meta-data/local-ipv4 || hostname -I | cut -d' ' -f1)

curl -sfL https://get.k3s.io | INSTALL_K3S_VERSION='{{K3S_VERSION}}' K3S_TOKEN="$TOKEN" K3S_URL="$SERVER" sh -s - agent \
  --node-ip "$NODE_IP" \
  --node-label 'gpuconform.io/pool={{POOL}}' \
  --node-label 'gpuconform.io/run-id={{RUN_ID}}'
