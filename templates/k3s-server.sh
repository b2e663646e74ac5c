#!/bin/sh
# gpuconform: cloud-init user data for the first control-plane node (rendered by the harness).
# Installs k3s with the cluster CA the harness generated, so the harness can build the
# kubeconfig itself and nothing secret ever travels over SSH (there is none).
set -eu

mkdir -p /var/lib/rancher/k3s/server/tls
umask 077
cat > /var/lib/rancher/k3s/server/tls/server-ca.crt <<'GPUCONFORM_CA_CERT'
{{CA_CERT}}
GPUCONFORM_CA_CERT
cat > /var/lib/rancher/k3s/server/tls/server-ca.key <<'GPUCONFORM_CA_KEY'
{{CA_KEY}}
GPUCONFORM_CA_KEY
# k3s accepts a user-provided CA when the client CA is present too; the harness uses one CA for both.
cp /var/lib/rancher/k3s/server/tls/server-ca.crt /var/lib/rancher/k3s/server/tls/client-ca.crt
cp /var/lib/rancher/k3s/server/tls/server-ca.key /var/lib/rancher/k3s/server/tls/client-ca.key
umask 022

TOKEN='{{TOKEN}}'
# Instance metadata with an IMDSv2 session token (IMDSv1 may be disabled).
IMDS_TOKEN=$(curl -fsS -m 5 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' http://169.254.169.254/latest/api/token || true)
imds() { curl -fsS -m 5 -H "X-aws-ec2-metadata-token: $IMDS_TOKEN" "http://169.254.169.254/latest/meta-data/$1"; }
NODE_IP=$(imds local-ipv4 || hostname -I | cut -d' ' -f1)
# k3s would label every node instance-type=k3s; the checks need the EC2 type.
INSTANCE_TYPE=$(imds instance-type || echo unknown)
PUBLIC_IP=$(imds public-ipv4 || true)

curl -sfL https://get.k3s.io | INSTALL_K3S_VERSION='{{K3S_VERSION}}' K3S_TOKEN="$TOKEN" sh -s - server \
  --node-ip "$NODE_IP" \
  ${PUBLIC_IP:+--tls-san "$PUBLIC_IP"} \
  --node-label "node.kubernetes.io/instance-type=$INSTANCE_TYPE" \
  --node-label 'gpuconform.io/pool={{POOL}}' \
  --node-label 'gpuconform.io/run-id={{RUN_ID}}' \
  --disable traefik
