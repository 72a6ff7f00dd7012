#!/usr/bin/env bash
# `make install-pi` / `make uninstall-pi`: the basket controller as a systemd service on a
# Raspberry Pi. Code in /opt/smart-basket (updates over the air in /opt/smart-basket/ota; run by the system's python3: no venv, no third-party
# package), settings in /etc/smart-basket/basket.env, state in /var/lib/smart-basket, user basket
# (groups dialout and i2c). DESTDIR=<dir> installs into a staging tree and leaves users, groups
# and systemd alone (used by the tests).
set -euo pipefail
cd "$(dirname "$0")/.."

DESTDIR=${DESTDIR:-}
PREFIX=/opt/smart-basket
ETC=/etc/smart-basket
UNIT=/etc/systemd/system/basket.service
USER_NAME=basket
PYTHON=${PYTHON:-/usr/bin/python3}

say() { echo "install-pi: $*"; }
die() { echo "install-pi: error: $*" >&2; exit 1; }

systemd_running() { [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; }

install_pi() {
    [ -n "$DESTDIR" ] || [ "$(id -u)" = 0 ] || die "run as root: sudo make install-pi"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' \
        || die "$PYTHON 3.9 or newer is needed"
    if [ -z "$DESTDIR" ]; then
        for g in dialout i2c; do
            getent group "$g" >/dev/null || { groupadd --system "$g"; say "created group $g"; }
        done
        if ! id "$USER_NAME" >/dev/null 2>&1; then
            useradd --system --user-group --home-dir /var/lib/smart-basket --no-create-home \
                --shell /usr/sbin/nologin "$USER_NAME"
            say "created user $USER_NAME"
        fi
        usermod -aG dialout,i2c "$USER_NAME"
    fi
    rm -rf "$DESTDIR$PREFIX/mqtt_controller"
    install -d -m 0755 "$DESTDIR$PREFIX/mqtt_controller"
    install -m 0644 mqtt_controller/*.py "$DESTDIR$PREFIX/mqtt_controller/"
    "$PYTHON" -m compileall -q "$DESTDIR$PREFIX/mqtt_controller" >/dev/null || true
    # OTA_DIR (the unit's ReadWritePaths): the versions updates install; kept by a re-install
    install -d -m 0755 "$DESTDIR$PREFIX/ota"
    if [ -z "$DESTDIR" ]; then
        chown "$USER_NAME:$USER_NAME" "$PREFIX/ota"
    fi
    install -d -m 0750 "$DESTDIR$ETC"
    if [ ! -e "$DESTDIR$ETC/basket.env" ]; then
        install -m 0640 deploy/basket.env.example "$DESTDIR$ETC/basket.env"
        say "wrote $ETC/basket.env from the example: edit it (or copy a provisioned <n>.env)"
    else
        say "kept the existing $ETC/basket.env"
    fi
    if [ -z "$DESTDIR" ]; then
        chown root:"$USER_NAME" "$ETC" "$ETC/basket.env"
    fi
    install -d -m 0755 "$DESTDIR$(dirname "$UNIT")"
    install -m 0644 deploy/basket.service "$DESTDIR$UNIT"
    if systemd_running; then
        systemctl daemon-reload
        say "installed; start it with: sudo systemctl enable --now basket"
        say "logs: journalctl -u basket -f"
    else
        say "installed into ${DESTDIR:-/} (systemd not touched)"
    fi
}

uninstall_pi() {
    [ -n "$DESTDIR" ] || [ "$(id -u)" = 0 ] || die "run as root: sudo make uninstall-pi"
    if systemd_running; then
        systemctl disable --now basket.service 2>/dev/null || true
    fi
    rm -f "$DESTDIR$UNIT"
    rm -rf "$DESTDIR$PREFIX"
    systemd_running && systemctl daemon-reload
    say "removed the service and $PREFIX; kept $ETC (settings), /var/lib/smart-basket (cart" \
        "state) and the user $USER_NAME: remove them by hand if wanted (userdel $USER_NAME)"
}

case "${1:-}" in
    install) install_pi ;;
    uninstall) uninstall_pi ;;
    *) die "usage: $0 install|uninstall" ;;
esac
