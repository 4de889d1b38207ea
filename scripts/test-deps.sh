#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain: the Mosquitto command-line
# clients (mosquitto_pub / mosquitto_sub), which some tests drive against fubar.
set -euo pipefail
if command -v mosquitto_pub >/dev/null && command -v mosquitto_sub >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "test-deps: please install the Mosquitto clients (mosquitto_pub, mosquitto_sub) with your package manager" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "test-deps: installing mosquitto-clients with apt-get" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mosquitto-clients >/dev/null
