#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine with Python 3.11:
# Debian packages (mosquitto for the tests' broker), a venv in .venv, chisan with its extras.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

need_apt=()
# CHISAN_SETUP_BROKER=0 (scripts/demo.sh): no mosquitto needed, the demo embeds its broker.
if [ "${CHISAN_SETUP_BROKER:-1}" != 0 ]; then
    command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
fi
"$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
# systemd-analyze, systemd-sysusers and systemd-tmpfiles check the shipped unit files.
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${need_apt[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# The broker is started by the tests on free loopback ports; the packaged service is not needed.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
    :
fi

"$PY" - <<'PYCHECK'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"chisan needs Python >= 3.11, found {sys.version.split()[0]}")
PYCHECK

if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e ".[${CHISAN_EXTRAS:-test,bench}]" 2>&1 | grep -v -E '^(WARNING: Location|  )' || true
.venv/bin/python -c 'import gateway, drivers' || { echo "setup: install failed"; exit 1; }
