#!/usr/bin/env bash
# Installs the PostgreSQL server from Debian's packages when it is missing; the service tests
# start their own throwaway cluster with it. When it cannot be installed this says why and
# exits 0: those tests then skip with a reason (pytest -ra lists it).
set -uo pipefail
have_server() { compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1; }
if have_server; then
  exit 0
fi
echo "PostgreSQL is missing: installing it from Debian's packages (postgresql)..."
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; else
    echo "warning: PostgreSQL is not installed and this user cannot install packages;" >&2
    echo "         the PostgreSQL tests will skip. Install it: apt-get install postgresql" >&2
    exit 0
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "warning: apt-get not found; install the PostgreSQL server yourself (the tests skip)." >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -qq && \
       $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }; then
  echo "warning: installing postgresql failed; the PostgreSQL tests will skip." >&2
  exit 0
fi
# The package may start its own cluster; the tests run theirs on a free port.
if command -v service >/dev/null 2>&1; then $SUDO service postgresql stop >/dev/null 2>&1 || true; fi
if have_server; then
  echo "PostgreSQL installed: $(ls -d /usr/lib/postgresql/*/bin | tail -1)"
else
  echo "warning: postgresql installed but no initdb found; the PostgreSQL tests will skip." >&2
fi
