#!/usr/bin/env bash
# Installs Mosquitto (broker and clients) from Debian's packages when it is missing.
set -euo pipefail
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
if have mosquitto && have mosquitto_pub && have mosquitto_passwd; then
  exit 0
fi
echo "Mosquitto is missing: installing it from Debian's packages (mosquitto, mosquitto-clients)..."
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "error: Mosquitto is not installed and this user cannot install packages." >&2
    echo "       Install it yourself: apt-get install mosquitto mosquitto-clients" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: apt-get not found; install Mosquitto 2.x and its clients with your package manager." >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends mosquitto mosquitto-clients >/dev/null
# A Debian install may start the packaged broker; the project runs its own.
if command -v service >/dev/null 2>&1; then $SUDO service mosquitto stop >/dev/null 2>&1 || true; fi
echo "Mosquitto installed: $(/usr/sbin/mosquitto -h 2>/dev/null | head -1)"
