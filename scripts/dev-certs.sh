#!/usr/bin/env bash
# Makes a development certificate authority and a nats-server certificate signed by it, for
# trying TLS (and for the TLS test). Not for production: use your own CA there.
#   scripts/dev-certs.sh [dir]    (default ./data/certs)
# Writes ca.crt/ca.key, server.crt/server.key (valid for localhost, 127.0.0.1 and the
# Kubernetes names nats, nats-0..2.nats) and client.crt/client.key (for mutual TLS).
set -euo pipefail
dir="${1:-./data/certs}"
mkdir -p "$dir"
cd "$dir"
if ! command -v openssl >/dev/null 2>&1; then
  echo "openssl is needed: apt-get install openssl" >&2
  exit 1
fi
days=825
openssl req -x509 -newkey rsa:2048 -nodes -days "$days" -subj "/CN=activeflow development CA" \
  -keyout ca.key -out ca.crt >/dev/null 2>&1
cat > server.ext <<EXT
subjectAltName = DNS:localhost, IP:127.0.0.1, DNS:nats, DNS:nats-0.nats, DNS:nats-1.nats, DNS:nats-2.nats
extendedKeyUsage = serverAuth, clientAuth
EXT
openssl req -newkey rsa:2048 -nodes -subj "/CN=nats" -keyout server.key -out server.csr >/dev/null 2>&1
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" -extfile server.ext -out server.crt >/dev/null 2>&1
printf 'extendedKeyUsage = clientAuth\n' > client.ext
openssl req -newkey rsa:2048 -nodes -subj "/CN=activeflow-client" -keyout client.key -out client.csr >/dev/null 2>&1
openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" -extfile client.ext -out client.crt >/dev/null 2>&1
rm -f server.csr client.csr server.ext client.ext ca.srl
chmod 600 ./*.key
echo "certificates in $dir: ca.crt, server.crt/key, client.crt/key" >&2
