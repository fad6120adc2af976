#!/usr/bin/env bash
# The demo: set up (as scripts/setup.sh does), then run the gateway on simulated devices.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/chisan demo "$@"
