#!/usr/bin/env bash
# Deletes what new-certs.sh made in OUT_DIR (default: priv/ssl next to this folder).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/..}"
rm -f "$out"/ca.pem "$out"/ca-key.pem "$out"/cert.pem "$out"/key.pem \
  "$out"/client-cert.pem "$out"/client-key.pem
