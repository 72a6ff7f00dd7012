#!/usr/bin/env bash
# Installs headless Chromium and a Korean font from Debian's packages when missing: the dashboard's
# end-to-end test drives /usr/bin/chromium through Playwright (no browser is ever downloaded).
# When it cannot be installed this says why and exits 0: that test then skips with a reason.
set -uo pipefail
have_all() { [ -x /usr/bin/chromium ] && fc-list 2>/dev/null | grep -qi nanum; }
if have_all; then
  exit 0
fi
echo "Chromium or a Korean font is missing: installing them from Debian's packages (chromium, fonts-nanum)..."
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; else
    echo "warning: Chromium is not installed and this user cannot install packages;" >&2
    echo "         the browser test will skip. Install it: apt-get install chromium fonts-nanum" >&2
    exit 0
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "warning: apt-get not found; install Chromium yourself (the browser test skips)." >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -qq && \
       $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-nanum fontconfig >/dev/null; }; then
  echo "warning: installing chromium failed; the browser test will skip." >&2
  exit 0
fi
echo "Chromium installed: $(/usr/bin/chromium --version 2>/dev/null | head -1)"
