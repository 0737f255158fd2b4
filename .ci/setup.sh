#!/usr/bin/env bash
# Installs everything the gateway and its tests need on a fresh Debian machine:
# system packages with apt-get, then the Python virtual environment in .venv.
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${need_apt[*]} with apt-get"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Debian starts a system-wide broker on 1883 on install; the gateway's tests and
  # dev runner start their own on loopback, so stop the system one if it came up.
  $SUDO service mosquitto stop >/dev/null 2>&1 || true
fi

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.13 python3.12 python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PY=$cand; break
    fi
  done
fi
[ -n "$PY" ] || { echo "setup: Python 3.11 or newer is required" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[test,speed]' 2>&1 | grep -v -E "^WARNING: Location|is ignored" || true
.venv/bin/python -c 'import gateway, aiohttp, jwt, paho.mqtt' || { echo "setup: the virtual environment is incomplete" >&2; exit 1; }

# -- Browser tests (issue 8): Debian's Chromium and the npm packages of web/ ---------------
# tests/browser drives /usr/bin/chromium with playwright-core (never a downloaded browser)
# and serves MQTT.js from web/node_modules. npm ci runs only when node_modules is missing
# or package-lock.json changed since the last install (its copy is kept in node_modules).
if [ ! -x /usr/bin/chromium ] || ! command -v npm >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  browser_pkgs=(chromium fonts-dejavu-core)
  command -v npm >/dev/null 2>&1 || browser_pkgs+=(nodejs npm)
  echo "setup: installing ${browser_pkgs[*]} with apt-get"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${browser_pkgs[@]}" >/dev/null
fi
if ! cmp -s web/package-lock.json web/node_modules/.package-lock.ci.json; then
  echo "setup: npm ci in web/"
  (cd web && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp web/package-lock.json web/node_modules/.package-lock.ci.json
fi
