"""Fleet health and remote configuration, the store's side (docs/fleet.md): the baskets'
latest health reports and their history of state changes, the desired configuration per
basket, and the alerts, computed when read by a pure function (`alerts`). `fleet(db, now)` is
what the CLI's `health`, the JSON API and the fleet page show."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from basket_service import config, contract
from basket_service.db import Database, Tx
from basket_service.db import now as stamp_now
from basket_service.store import report_bad_row

Doc = dict[str, Any]
Alert = dict[str, str]

SILENT_INTERVALS = 3  # `silent`: no report for this many of the basket's intervals
REJECTIONS_RUN = 10  # `rejections`: this many more rejected commands or items in one report
ALERT_KINDS = ("offline_in_session", "silent", "reader_down", "display_failed", "low_memory",
               "low_battery", "version_mismatch", "config_rejected", "rejections")


@dataclass(frozen=True)
class Thresholds:
    min_free: int = 8192  # HEALTH_MIN_FREE: bytes free on the heap
    min_battery_mv: int = 3400  # HEALTH_MIN_BATTERY_MV

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Thresholds:
        free, battery = config.health_thresholds(env)
        return cls(free, battery)


# --- alerts: pure ---------------------------------------------------------------------------
def _when(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _ago(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return "%d s" % s
    if s < 7200:
        return "%d min" % (s // 60)
    if s < 172800:
        return "%d h" % (s // 3600)
    return "%d days" % (s // 86400)


def alerts(basket_row: Mapping[str, Any], health_doc: Mapping[str, Any] | None, now: datetime,
           fleet_version: str | None, thresholds: Thresholds) -> list[Alert]:
    """What is wrong with one basket, from what is stored. `basket_row`: "online" (True,
    False or None: never said), "in_use", "health_at" (when its latest report came, ISO 8601)
    and "prev_counters" (the counters of the report before it, or None). `health_doc`: its
    latest report (None: none yet). `fleet_version`: the most common version in the fleet."""
    out: list[Alert] = []
    online = basket_row.get("online")
    if basket_row.get("in_use") and online is False:
        out.append({"kind": "offline_in_session", "text": "offline while a session is open"})
    if health_doc is None:
        return out
    interval = health_doc.get("interval_s")
    at = _when(basket_row.get("health_at"))
    # An offline basket says so (its last will, or a clean stop): only one that should be
    # reporting is silent.
    if isinstance(interval, int) and interval > 0 and at is not None and online is not False:
        quiet = (now - at).total_seconds()
        if quiet >= SILENT_INTERVALS * interval:
            out.append({"kind": "silent", "text": "no health report for %s (interval %d s)"
                        % (_ago(quiet), interval)})
    for r in health_doc.get("readers") or []:
        if r.get("state") == "down":
            out.append({"kind": "reader_down", "text": "reader %s down" % r.get("name")})
    if health_doc.get("display") == "failed":
        out.append({"kind": "display_failed", "text": "display failed"})
    free = health_doc.get("mem_free")
    if isinstance(free, int) and free < thresholds.min_free:
        out.append({"kind": "low_memory", "text": "%d bytes free on the heap (below %d)"
                    % (free, thresholds.min_free)})
    mv = health_doc.get("battery_mv")
    if isinstance(mv, int) and mv < thresholds.min_battery_mv:
        out.append({"kind": "low_battery", "text": "battery %d mV (below %d)"
                    % (mv, thresholds.min_battery_mv)})
    version = health_doc.get("version")
    if fleet_version is not None and version != fleet_version:
        out.append({"kind": "version_mismatch", "text": "version %s; the fleet runs %s"
                    % (version, fleet_version)})
    error = health_doc.get("config_error")
    if error:
        out.append({"kind": "config_rejected", "text": "config rejected: %s" % error})
    prev = basket_row.get("prev_counters")
    counters = health_doc.get("counters") or {}
    if isinstance(prev, Mapping):
        grew = []
        for key, what in (("rejected_commands", "commands"), ("rejected_items", "items")):
            old, new = prev.get(key), counters.get(key)
            if isinstance(old, int) and isinstance(new, int) and new - old >= REJECTIONS_RUN:
                grew.append("%d %s" % (new - old, what))
        if grew:
            out.append({"kind": "rejections", "text": "%s rejected since the previous report"
                        % " and ".join(grew)})
    return out


def fleet_version(docs: Iterable[Mapping[str, Any] | None]) -> str | None:
    """The most common version among the reports (ties: the highest version string)."""
    seen = Counter(d.get("version") for d in docs if d is not None and d.get("version"))
    if not seen:
        return None
    return str(max(seen.items(), key=lambda kv: (kv[1], str(kv[0])))[0])


# --- storage --------------------------------------------------------------------------------
def _text(v: object) -> str | None:
    if v is None:
        return None
    return v if isinstance(v, str) else json.dumps(v)


def watched(doc: Mapping[str, Any] | None) -> dict[str, object]:
    """The values whose changes health_events records (what -> value)."""
    if doc is None:
        return {}
    out: dict[str, object] = {k: doc.get(k) for k in ("version", "display", "config_rev",
                                                      "config_error")}
    ota = doc.get("ota")
    if isinstance(ota, dict):  # an update's progress: `ota` "downloading 1.2.0", `ota_error`
        out["ota"] = "%s %s" % (ota.get("state"), ota.get("version") or "-")
        out["ota_error"] = ota.get("error")
    for r in doc.get("readers") or []:
        out["reader %s" % r.get("name")] = r.get("state")
    return out


def record_health_tx(t: Tx, basket: int, doc: Doc, since: str | None = None
                     ) -> list[tuple[str, str | None, str | None]] | None:
    """Stores a basket's report as its latest and records what changed (health_events).
    `since` (a sweep's copy, read from then on): kept only when nothing newer is stored.
    Returns the events written [(what, old, new)], None when skipped."""
    t.lock_basket(basket)  # the basket is known (and on PostgreSQL, one writer at a time)
    row = t.one("SELECT received_at, doc FROM health WHERE basket = ?", (basket,))
    if row is not None and since is not None and row[0] >= since:
        return None
    old: Doc | None = None
    if row is not None:
        try:
            old = json.loads(row[1])
        except ValueError:
            old = None
    at = stamp_now()
    before, after = watched(old), watched(doc)
    events = []
    for what in list(after) + [k for k in before if k not in after]:
        o, n = _text(before.get(what)), _text(after.get(what))
        if o != n:
            events.append((what, o, n))
            t.run("INSERT INTO health_events (basket, at, what, old, new) VALUES (?, ?, ?, ?, ?)",
                  (basket, at, what, o, n))
    prev = json.dumps(old.get("counters")) if isinstance(old, dict) else None
    t.run("INSERT INTO health (basket, received_at, doc, prev_counters) VALUES (?, ?, ?, ?)"
          " ON CONFLICT (basket) DO UPDATE SET received_at = excluded.received_at,"
          " doc = excluded.doc, prev_counters = excluded.prev_counters",
          (basket, at, contract.encode_doc(doc), prev))
    return events


def ota_of(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """A report's `ota` as {state, version, error}; None: updates off (or an older basket)."""
    ota = doc.get("ota")
    if not isinstance(ota, dict):
        return None
    return {"state": ota.get("state"), "version": ota.get("version"), "error": ota.get("error")}


def known_baskets_tx(t: Tx) -> list[int]:
    rows = t.all("SELECT id FROM baskets UNION SELECT basket FROM health"
                 " UNION SELECT basket FROM basket_config UNION SELECT basket FROM ota_pushes")
    return sorted(int(r[0]) for r in rows)


def known_baskets(db: Database) -> list[int]:
    with db.read() as t:
        return known_baskets_tx(t)


def _doc(table: str, key: object, text: object) -> Doc | None:
    if text is None:
        return None
    try:
        doc = json.loads(str(text))
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        return doc
    except ValueError as e:
        report_bad_row(table, key, text, e)
        return None


def fleet(db: Database, now: datetime | None = None,
          thresholds: Thresholds | None = None) -> list[dict[str, Any]]:
    """One row per basket the database knows (a cart, a session, a report, a desired config
    or a pushed release), with its latest report's fields (`ota`: its update's progress), the
    desired config's rev, the release last pushed to it and its alerts. One read transaction.
    `now` (aware; default: the clock) is when `silent` is judged."""
    now = now or datetime.now(timezone.utc)
    thresholds = thresholds or Thresholds.from_env()
    with db.read() as t:
        ids = known_baskets_tx(t)
        baskets = {r[0]: r for r in t.all(
            "SELECT id, in_use, session_id, online, availability_at, updated_at FROM baskets")}
        health = {r[0]: r for r in t.all(
            "SELECT basket, received_at, doc, prev_counters FROM health")}
        desired = {r[0]: r[1] for r in t.all("SELECT basket, rev FROM basket_config")}
        pushed = {r[0]: r[1] for r in t.all("SELECT basket, version FROM ota_pushes")}
    docs = {b: _doc("health", b, h[2]) for b, h in health.items()}
    version = fleet_version(docs.values())
    out = []
    for b in ids:
        row = baskets.get(b)
        h = health.get(b)
        doc = docs.get(b)
        online = None if row is None or row[3] is None else bool(row[3])
        health_at = h[1] if h else None
        prev = _doc("health", b, h[3]) if h and h[3] else None
        basket_row = {"online": online, "in_use": bool(row[1]) if row else False,
                      "health_at": health_at, "prev_counters": prev}
        stamps = [s for s in (health_at, row[4] if row else None, row[5] if row else None) if s]
        d = doc or {}
        out.append({
            "basket": b,
            "online": online,
            "in_use": basket_row["in_use"],
            "session": row[2] if row else None,
            "version": d.get("version"),
            "runtime": d.get("runtime"),
            "uptime_s": d.get("uptime_s"),
            "boot": d.get("boot"),
            "last_seen": max(stamps) if stamps else None,
            "health_at": health_at,
            "interval_s": d.get("interval_s"),
            "rssi": d.get("rssi"),
            "readers": d.get("readers") or [],
            "display": d.get("display"),
            "battery_mv": d.get("battery_mv"),
            "mem_free": d.get("mem_free"),
            "counters": d.get("counters") or {},
            "config_rev": d.get("config_rev"),
            "config_error": d.get("config_error"),
            "desired_rev": desired.get(b),
            "ota": ota_of(d),
            "pushed_version": pushed.get(b),
            "alerts": alerts(basket_row, doc, now, version, thresholds),
        })
    return out


def history(db: Database, basket: int | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """health_events, newest first (one basket's, or every basket's)."""
    where, params = ("WHERE basket = ? ", (basket,)) if basket is not None else ("", ())
    with db.read() as t:
        rows = t.all("SELECT id, basket, at, what, old, new FROM health_events " + where
                     + "ORDER BY id DESC LIMIT ?", (*params, limit))
    return [{"id": r[0], "basket": r[1], "at": r[2], "what": r[3], "old": r[4], "new": r[5]}
            for r in rows]


# --- desired configuration ------------------------------------------------------------------
def set_config(db: Database, basket: int, values: Mapping[str, int | str]) -> tuple[int, Doc]:
    """Merges `values` (checked: contract.remote_value) into the basket's desired set, one rev
    up, committed. Returns (rev, the whole set) to publish."""
    with db.tx() as t:
        lock = " FOR UPDATE" if db.backend == "postgresql" else ""
        row = t.one("SELECT rev, doc FROM basket_config WHERE basket = ?" + lock, (basket,))
        current = (_doc("basket_config", basket, row[1]) or {}) if row else {}
        merged = {**current, **values}
        rev = (int(row[0]) if row else 0) + 1
        contract.config_payload(rev, merged)  # fits (ValueError otherwise: nothing written)
        t.run("INSERT INTO basket_config (basket, rev, doc, set_at) VALUES (?, ?, ?, ?)"
              " ON CONFLICT (basket) DO UPDATE SET rev = excluded.rev, doc = excluded.doc,"
              " set_at = excluded.set_at", (basket, rev, contract.encode_doc(merged), stamp_now()))
        return rev, merged


def configs(db: Database, baskets: Iterable[int]) -> list[dict[str, Any]]:
    """Per basket: the desired rev and set (None/{} when none was set), when it was set, and
    what its latest report says was applied (config_rev, config_error)."""
    with db.read() as t:
        desired = {r[0]: r for r in t.all("SELECT basket, rev, doc, set_at FROM basket_config")}
        health = {r[0]: r[1] for r in t.all("SELECT basket, doc FROM health")}
    out = []
    for b in baskets:
        d = desired.get(b)
        doc = _doc("health", b, health.get(b)) or {}
        out.append({"basket": b, "desired_rev": d[1] if d else None,
                    "set": (_doc("basket_config", b, d[2]) or {}) if d else {},
                    "set_at": d[3] if d else None, "config_rev": doc.get("config_rev"),
                    "config_error": doc.get("config_error")})
    return out
