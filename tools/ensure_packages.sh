#!/usr/bin/env bash
# Installs Debian packages when a check says something is missing (make test runs this, so a
# fresh machine and CI get what the tests need):
#   ensure_packages.sh [--optional] NAME 'CHECK COMMAND' PACKAGE...
# Without --optional a failed install is an error; with it, a warning, and the tests that need
# NAME skip with a reason.
set -uo pipefail
optional=0
if [ "${1:-}" = "--optional" ]; then optional=1; shift; fi
name=$1 check=$2; shift 2
if bash -c "$check" >/dev/null 2>&1; then
  exit 0
fi
give_up() {
  if [ $optional = 1 ]; then
    echo "warning: $1; the tests that need $name will skip." >&2
    exit 0
  fi
  echo "error: $1." >&2
  exit 1
}
echo "$name is missing: installing it from Debian's packages ($*)..."
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; else
    give_up "$name is not installed and this user cannot install packages (apt-get install $*)"
  fi
fi
command -v apt-get >/dev/null 2>&1 || give_up "apt-get not found; install $name yourself ($*)"
export DEBIAN_FRONTEND=noninteractive
{ $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null; } \
  || give_up "installing $* failed"
# A package may start its own service; the project runs its own instances on free ports.
for svc in mosquitto postgresql; do
  case " $* " in *" $svc "*) command -v service >/dev/null 2>&1 && $SUDO service $svc stop >/dev/null 2>&1 ;; esac
done
bash -c "$check" >/dev/null 2>&1 || give_up "$* installed, but the check still fails: $check"
echo "$name installed."
