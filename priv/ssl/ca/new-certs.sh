#!/usr/bin/env bash
# Makes TLS material for fubar's MQTTS listener with openssl:
#   ca.pem / ca-key.pem          a self-signed CA ("fubar test CA"), 10 years
#   cert.pem / key.pem           a server certificate signed by it (SAN localhost,
#                                127.0.0.1, ::1 and any names given in FUBAR_TLS_SAN)
#   client-cert.pem / client-key.pem   a client certificate for mutual TLS (CN "fubar-client")
# Keys are EC P-256 (FUBAR_TLS_KEY=rsa for RSA 2048); signatures SHA-256.
#
# Usage: priv/ssl/ca/new-certs.sh [OUT_DIR]     (default: priv/ssl next to this folder)
# Then set in the config:  [tls] cert_file = "<OUT_DIR>/cert.pem"  key_file = "<OUT_DIR>/key.pem"
# and for mTLS:            client_ca_file = "<OUT_DIR>/ca.pem"
# Existing files in OUT_DIR are replaced. These certificates are for testing and private
# deployments; use your own CA's certificates where clients already trust one.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/..}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
days=3650
extra_san="${FUBAR_TLS_SAN:-}"

newkey() {
  if [ "${FUBAR_TLS_KEY:-ec}" = "rsa" ]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null
  else
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
  fi
  chmod 600 "$1"
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The CA.
newkey "$out/ca-key.pem"
openssl req -x509 -new -sha256 -days "$days" -key "$out/ca-key.pem" -out "$out/ca.pem" \
  -subj "/O=fubar/CN=fubar test CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

# The server certificate.
san="DNS:localhost,IP:127.0.0.1,IP:::1"
if [ -n "$extra_san" ]; then san="$san,$extra_san"; fi
newkey "$out/key.pem"
openssl req -new -sha256 -key "$out/key.pem" -out "$work/server.csr" -subj "/O=fubar/CN=localhost" 2>/dev/null
cat > "$work/server.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san
EXT
openssl x509 -req -sha256 -days "$days" -in "$work/server.csr" -CA "$out/ca.pem" \
  -CAkey "$out/ca-key.pem" -CAcreateserial -CAserial "$work/ca.srl" \
  -extfile "$work/server.ext" -out "$out/cert.pem" 2>/dev/null

# A client certificate for mutual TLS.
newkey "$out/client-key.pem"
openssl req -new -sha256 -key "$out/client-key.pem" -out "$work/client.csr" -subj "/O=fubar/CN=fubar-client" 2>/dev/null
cat > "$work/client.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
EXT
openssl x509 -req -sha256 -days "$days" -in "$work/client.csr" -CA "$out/ca.pem" \
  -CAkey "$out/ca-key.pem" -CAserial "$work/ca.srl" \
  -extfile "$work/client.ext" -out "$out/client-cert.pem" 2>/dev/null

echo "new-certs: CA, server and client certificates written to $out"
