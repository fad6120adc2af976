#!/usr/bin/env bash
# The demo: set up the virtual environment (no broker needed: mosquitto is used when installed,
# the embedded amqtt broker otherwise), then run a simulated day. Options: .venv/bin/chisan demo --help
set -euo pipefail
cd "$(dirname "$0")/.."
CHISAN_SETUP_BROKER=0 bash scripts/setup.sh
exec .venv/bin/chisan demo "$@"
