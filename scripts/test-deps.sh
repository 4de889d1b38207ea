#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain: the Mosquitto command-line
# clients (mosquitto_pub / mosquitto_sub), which some tests drive against fubar, and openssl,
# which priv/ssl/ca/new-certs.sh uses to make the certificates of the TLS tests.
set -euo pipefail
if command -v mosquitto_pub >/dev/null && command -v mosquitto_sub >/dev/null \
  && command -v openssl >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "test-deps: please install the Mosquitto clients (mosquitto_pub, mosquitto_sub) and openssl with your package manager" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "test-deps: installing mosquitto-clients and openssl with apt-get" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mosquitto-clients openssl >/dev/null
