"""Settings from the environment. A bad value raises ConfigError naming the variable;
the command line turns it into exit status 2 without a traceback. Passwords never appear
in repr() or logs."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from basket_service import payments


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    mqtt_host: str = "localhost"
    mqtt_port: int = 1883
    mqtt_user: str | None = None
    mqtt_password: str | None = field(default=None, repr=False)
    mqtt_cafile: Path | None = None
    db_path: Path = Path("basket.db")
    database_url: str | None = field(default=None, repr=False)
    client_id: str = ""
    db_sync: str = "normal"  # SQLite's synchronous pragma: normal | full
    baskets: Baskets | None = None  # BASKETS: the store's baskets; None = the ones the db knows
    health_min_free: int = 8192  # HEALTH_MIN_FREE: low_memory below this many bytes free
    health_min_battery_mv: int = 3400  # HEALTH_MIN_BATTERY_MV: low_battery below this
    # Updates over the air (docs/ota.md): where releases are built and served from, the base
    # URL baskets fetch them from (None: `release push --url` must say), and the baskets' keys.
    release_dir: Path = Path("releases")  # RELEASE_DIR: default `releases` beside BASKET_DB
    release_url: str | None = None  # RELEASE_URL, e.g. http://192.168.1.10:8080
    ota_keys_file: Path | None = None  # OTA_KEYS_FILE: tools/provision.py's ota-keys.json
    # The shopper's self-service (docs/shopper.md).
    payment_provider: str = "counter"  # PAYMENT_PROVIDER: counter | test | a registered one
    session_idle_min: int = 30  # SESSION_IDLE_MIN: an empty session untouched this long ends
    shop_url: str | None = None  # SHOP_URL: the base URL the baskets' QR labels open

    @property
    def backend(self) -> str:
        return "postgresql" if self.database_url else "sqlite"

    def describe_db(self) -> str:
        """Where the data lives, safe to log (no password)."""
        if self.database_url:
            return "postgresql " + redact_url(self.database_url)
        return "sqlite %s" % self.db_path


@dataclass(frozen=True)
class Baskets:
    """The store's baskets as sorted, non-overlapping ranges (BASKETS=1-200 or 1-10,20)."""

    ranges: tuple[tuple[int, int], ...]

    def __contains__(self, n: object) -> bool:
        return isinstance(n, int) and any(lo <= n <= hi for lo, hi in self.ranges)

    def __str__(self) -> str:
        return ",".join(str(lo) if lo == hi else "%d-%d" % (lo, hi) for lo, hi in self.ranges)


BASKET_MAX = 999_999_999  # the contract's largest basket number


def parse_baskets(raw: str) -> Baskets:
    """'1-10, 20' -> Baskets(((1, 10), (20, 20))); anything else is a ConfigError."""
    bad = ConfigError("BASKETS must list basket numbers 1-%d and ranges, like 1-200 or "
                      "1-10,20; got %r" % (BASKET_MAX, raw[:40]))
    ranges = []
    for part in raw.split(","):
        m = re.fullmatch(r"\s*([0-9]{1,9})\s*(?:-\s*([0-9]{1,9})\s*)?", part)
        if not m:
            raise bad
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if not 1 <= lo <= hi:
            raise bad
        ranges.append((lo, hi))
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return Baskets(tuple(merged))


def redact_url(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db"""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, hostpart = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return "%s://%s:***@%s" % (scheme, user, hostpart) if ":" in creds else url


def _port(env: Mapping[str, str]) -> int:
    raw = env.get("MQTT_PORT", "1883").strip()
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError("MQTT_PORT must be an integer 1-65535, got %r" % raw)
    if not 1 <= port <= 65535:
        raise ConfigError("MQTT_PORT must be an integer 1-65535, got %r" % raw)
    return port


def _whole(env: Mapping[str, str], key: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = lo - 1
    if not lo <= value <= hi:
        raise ConfigError("%s must be a whole number %d-%d, got %r" % (key, lo, hi, raw[:20]))
    return value


# A host name or IPv4 address (the baskets' URL parser takes no IPv6 brackets), a port, a path.
RELEASE_URL_RE = re.compile(r"http://([A-Za-z0-9.-]+)(?::([0-9]{1,5}))?(/[A-Za-z0-9._~/-]*)?")


SHOP_URL_RE = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?")


def shop_url(raw: str) -> str:
    """The base URL a basket's QR label opens (`<SHOP_URL>/shop/<n>`): http(s)://host[:port]
    [/prefix], no trailing slash. ConfigError naming SHOP_URL otherwise."""
    url = raw.strip().rstrip("/")
    if not SHOP_URL_RE.fullmatch(url) or len(url) > 200:
        raise ConfigError("SHOP_URL must be a base URL like https://shop.example.com or "
                          "http://192.168.1.10:8080 (no query), got %r" % raw[:80])
    return url


def release_url(raw: str, name: str = "RELEASE_URL") -> str:
    """A base URL the baskets fetch releases from: http://host[:port][/prefix], no trailing
    slash, no query. Only http: a release's integrity comes from its signed hashes, and the
    baskets speak plain HTTP/1.0 (docs/ota.md). ConfigError naming `name` otherwise."""
    url = raw.strip().rstrip("/")
    m = RELEASE_URL_RE.fullmatch(url)
    if not m or (m.group(2) is not None and not 1 <= int(m.group(2)) <= 65535) or len(url) > 200:
        raise ConfigError("%s must be a plain http:// base URL like http://192.168.1.10:8080 (no"
                          " https, user, query or spaces), got %r" % (name, raw[:60]))
    return url


def health_thresholds(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(HEALTH_MIN_FREE, HEALTH_MIN_BATTERY_MV): the low_memory and low_battery alerts'
    thresholds (bytes of heap free, millivolts)."""
    env = os.environ if env is None else env
    return (_whole(env, "HEALTH_MIN_FREE", 8192, 0, 2**31),
            _whole(env, "HEALTH_MIN_BATTERY_MV", 3400, 0, 100_000))


def load(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    host = env.get("MQTT_HOST", "localhost").strip()
    if not host or any(c.isspace() for c in host):
        raise ConfigError("MQTT_HOST must be a host name or address, got %r" % host)
    user = env.get("MQTT_USER") or None
    password = env.get("MQTT_PASSWORD") or None
    if password and not user:
        raise ConfigError("MQTT_PASSWORD is set but MQTT_USER is not")
    cafile = env.get("MQTT_CAFILE") or None
    if cafile and not Path(cafile).is_file():
        raise ConfigError("MQTT_CAFILE names no readable file: %r" % cafile)
    url = env.get("DATABASE_URL") or None
    if url and not url.startswith(("postgresql://", "postgres://")):
        # Never echo the URL: it may carry a password.
        raise ConfigError("DATABASE_URL must start with postgresql:// (unset it to use SQLite)")
    db = env.get("BASKET_DB", "basket.db").strip()
    if not db:
        raise ConfigError("BASKET_DB must be a file path, got an empty value")
    db_path = Path(db)
    if not url and db_path.is_dir():
        raise ConfigError("BASKET_DB must be a file path, %r is a directory" % db)
    sync = env.get("BASKET_DB_SYNC", "normal").strip().lower() or "normal"
    if sync not in ("normal", "full"):
        raise ConfigError("BASKET_DB_SYNC must be normal or full, got %r" % sync[:20])
    client_id = env.get("SERVICE_CLIENT_ID", "").strip()
    if len(client_id) > 64:
        raise ConfigError("SERVICE_CLIENT_ID is longer than 64 characters")
    baskets = env.get("BASKETS", "").strip()
    min_free, min_battery = health_thresholds(env)
    release_dir = env.get("RELEASE_DIR", "").strip()
    raw_url = env.get("RELEASE_URL", "").strip()
    keys_file = env.get("OTA_KEYS_FILE", "").strip()
    provider = (env.get("PAYMENT_PROVIDER", "") or payments.DEFAULT).strip().lower()
    if provider not in payments.names():
        raise ConfigError("PAYMENT_PROVIDER must be one of %s, got %r"
                          % (", ".join(payments.names()), provider[:40]))
    raw_shop = env.get("SHOP_URL", "").strip()
    return Settings(
        mqtt_host=host,
        mqtt_port=_port(env),
        mqtt_user=user,
        mqtt_password=password,
        mqtt_cafile=Path(cafile) if cafile else None,
        db_path=db_path,
        database_url=url,
        db_sync=sync,
        baskets=parse_baskets(baskets) if baskets else None,
        health_min_free=min_free,
        health_min_battery_mv=min_battery,
        release_dir=Path(release_dir) if release_dir else db_path.parent / "releases",
        release_url=release_url(raw_url) if raw_url else None,
        ota_keys_file=Path(keys_file) if keys_file else None,
        payment_provider=provider,
        session_idle_min=_whole(env, "SESSION_IDLE_MIN", 30, 1, 24 * 60),
        shop_url=shop_url(raw_shop) if raw_shop else None,
        client_id=client_id or "basket-service-%s" % socket.gethostname()[:40],
    )
