"""The command line: `serve` runs the service; `start`, `end`, `checkout`, `carts`,
`receipts`, `history`, `stock`, `health`, `config` and `release` work beside it through the same
database and broker.
Exit status: 0 done, 1 refused or failed (message says why), 2 bad settings or usage."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from basket_service import catalog, config, contract, fleet, labels, releases, sessions, store
from basket_service import products as products_mod
from basket_service.config import ConfigError, Settings
from basket_service.db import DB_ERRORS, Database, DatabaseError, first_line, open_db
from basket_service.mqttlink import LinkError, publisher

if TYPE_CHECKING:
    from basket_service.web.access import Access
    from basket_service.web.server import Dashboard

log = logging.getLogger("basket_service")


class Fail(Exception):
    """Ends a command with a message and exit status 1."""


def basket_number(text: str) -> int:
    if not contract.ID_RE.match(text):
        raise argparse.ArgumentTypeError("basket number must be 1-999999999, got %r" % text)
    return int(text)


def share_group(text: str) -> str:
    if not text or len(text) > 64 or any(c in text for c in "/+#") or not text.isprintable():
        raise argparse.ArgumentTypeError("share group must be 1-64 printable characters "
                                         "without / + #, got %r" % text)
    return text


def port_number(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError("port must be 0-65535, got %r" % text)
    return int(text)


def stock_bound(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = catalog.MAX_STOCK + 1
    if not -catalog.MAX_STOCK <= value <= catalog.MAX_STOCK:
        raise argparse.ArgumentTypeError("--below must be a whole number from %d to %d, got %r"
                                         % (-catalog.MAX_STOCK, catalog.MAX_STOCK, text[:40]))
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m basket_service", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the service (loads the catalogue into the database)")
    s.add_argument("--catalog", required=True, metavar="CSV|original",
                   help="catalogue CSV (UTF-8), or the word `original`: the original product "
                        "table (data/products_original.csv, 4,554 products, the sample's codes "
                        "for the names it has)")
    s.add_argument("--reset-stock", action="store_true",
                   help="set every product's stock to the catalogue's (products the catalogue "
                        "gives a stock for); without it the database keeps the stock it has")
    s.add_argument("--share-group", type=share_group, help="subscribe via $share/NAME/...")
    s.add_argument("--client-id", help="stable MQTT client id of this process "
                   "(default: SERVICE_CLIENT_ID or basket-service-<hostname>)")
    s.add_argument("--http", type=port_number, metavar="PORT",
                   help="also serve the dashboard on this port (see `web`)")
    s.add_argument("--http-host", default="127.0.0.1", metavar="HOST",
                   help="the dashboard's bind address (default 127.0.0.1; any other needs "
                        "DASHBOARD_TOKEN)")
    w = sub.add_parser("web", help="the store dashboard alone, beside a running service")
    w.add_argument("--port", type=port_number, default=8080, help="default 8080")
    w.add_argument("--host", default="127.0.0.1",
                   help="bind address (default 127.0.0.1; any other needs DASHBOARD_TOKEN)")
    for name, what in (("start", "start a session on a free basket"),
                       ("end", "cancel a basket's session"),
                       ("checkout", "write the receipt and end the session")):
        sub.add_parser(name, help=what).add_argument("basket", type=basket_number)
    c = sub.add_parser("carts", help="every basket's state and cart")
    c.add_argument("--json", action="store_true")
    r = sub.add_parser("receipts", help="the newest receipts")
    r.add_argument("--limit", type=int, default=20)
    r.add_argument("--json", action="store_true")
    h = sub.add_parser("history", help="accepted updates (append-only)")
    h.add_argument("basket", type=basket_number, nargs="?")
    h.add_argument("--json", action="store_true")
    sub.add_parser("stats", help="counters (rejected updates by reason)")
    st = sub.add_parser("stock", help="products low on or out of stock, lowest first")
    st.add_argument("--below", type=stock_bound, default=5,
                    help="list stock of this or less (default 5)")
    st.add_argument("--limit", type=int, default=500)
    st.add_argument("--json", action="store_true")
    hl = sub.add_parser("health", help="the fleet: every basket's latest health and alerts")
    hl.add_argument("--json", action="store_true")
    cf = sub.add_parser("config", help="remote configuration of the baskets")
    csub = cf.add_subparsers(dest="config_command", required=True)
    cs = csub.add_parser("set", help="merge KEY=VALUE settings into the baskets' desired "
                         "config and publish it (remote-safe keys: %s)"
                         % ", ".join(contract.REMOTE_SAFE))
    cs.add_argument("--baskets", required=True, metavar="SPEC",
                    help="1-20, 1,3,5-7 or all (BASKETS, or every basket the database knows)")
    cs.add_argument("settings", nargs="+", metavar="KEY=VALUE")
    cw = csub.add_parser("show", help="desired and applied config per basket")
    cw.add_argument("--baskets", metavar="SPEC", default="all", help="default: all")
    cw.add_argument("--json", action="store_true")
    add_release_parser(sub)
    lb = sub.add_parser("labels", help="a printable page of QR labels opening each basket's "
                        "shopper page (docs/shopper.md)")
    lb.add_argument("--baskets", required=True, metavar="SPEC", help="1-50, 1,3,5-7 or all")
    lb.add_argument("--url", metavar="URL", help="the base URL phones reach the service at "
                    "(default: SHOP_URL), e.g. https://shop.example.com")
    lb.add_argument("--out", type=Path, default=Path("labels.html"),
                    help="the page to write (default: labels.html)")
    return p


def add_release_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rl = sub.add_parser("release", help="updates over the air: build, push, follow releases "
                        "(docs/ota.md)")
    rsub = rl.add_subparsers(dest="release_command", required=True)
    ra = rsub.add_parser("add", help="build release V of the basket's files into RELEASE_DIR")
    ra.add_argument("--version", required=True, metavar="V",
                    help="1-32 of A-Z a-z 0-9 . _ + - (not starting with .); what the baskets"
                         " report once updated")
    ra.add_argument("--from", dest="src", type=Path, metavar="DIR",
                    help="the checkout to build from (default: this one)")
    rp = rsub.add_parser("push", help="tell baskets to update to release V (signed per basket,"
                         " retained on basket/<n>/ota)")
    rp.add_argument("version", metavar="V")
    rp.add_argument("--baskets", required=True, metavar="SPEC",
                    help="1-20, 1,3,5-7 or all (BASKETS, or every basket the database knows)")
    rp.add_argument("--url", metavar="URL", help="the base URL the baskets fetch from, e.g. "
                    "http://192.168.1.10:8080 (default: RELEASE_URL)")
    rc = rsub.add_parser("clear", help="withdraw the pushed release (the retained push is "
                         "removed; baskets keep what they run)")
    rc.add_argument("--baskets", required=True, metavar="SPEC")
    rs = rsub.add_parser("status", help="per basket: the pushed release beside what it reports")
    rs.add_argument("--baskets", metavar="SPEC", default="all", help="default: all")
    rs.add_argument("--json", action="store_true")
    rsub.add_parser("list", help="the releases built in RELEASE_DIR")


def setup_logging() -> None:
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got %r" % level)
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def reconcile_s(env: dict[str, str] | None = None) -> float:
    """RECONCILE_S: seconds between the service's reads of the broker's retained carts
    (default 60; 0 turns them off)."""
    from basket_service.service import RECONCILE_S

    raw = (os.environ if env is None else env).get("RECONCILE_S", "").strip()
    if not raw:
        return RECONCILE_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not (value == 0 or 1 <= value <= 86400):
        raise ConfigError("RECONCILE_S must be 0 (off) or 1-86400 seconds, got %r" % raw[:20])
    return value


def load_catalog(spec: str) -> dict[str, catalog.Product]:
    """--catalog: `original` (the original product table, coded with the sample's codes) or a
    catalogue CSV's path; ConfigError (exit 2) naming the file and line at fault."""
    try:
        if spec == "original":
            return products_mod.original_catalog()
        return catalog.load(Path(spec))
    except (catalog.CatalogError, products_mod.ProductsError) as e:
        raise ConfigError("--catalog: %s" % e)


def serve(args: argparse.Namespace, settings: Settings) -> int:
    from basket_service.service import Service

    products = load_catalog(args.catalog)
    db = open_db(settings)
    loaded = store.load_products(db, products, reset_stock=args.reset_stock)
    log.info("catalogue %s: %d products loaded into %s (%d added, %d updated, %d removed%s)",
             args.catalog, len(products), db.where, loaded.added, loaded.updated,
             loaded.removed, "; stock reset from the catalogue" if args.reset_stock else "")
    svc = Service(settings, db, products, args.share_group, reconcile_s())
    dash = None
    if args.http is not None:
        from basket_service.web.access import access_from_env

        dash = start_dashboard(settings, access_from_env(args.http_host, args.http))
        svc.on_change = dash.hub.poke

    def on_signal(signum: int, frame: FrameType | None) -> None:
        svc.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        svc.run()
    finally:
        if dash is not None:
            dash.stop()
        db.close()
    return 0


def start_dashboard(settings: Settings, access: Access) -> Dashboard:
    from basket_service.web.server import Dashboard, DashboardError

    try:
        return Dashboard(settings, access).start()
    except DashboardError as e:
        raise Fail(str(e))


def run_web(args: argparse.Namespace, settings: Settings) -> int:
    """`web`: the dashboard alone; it reads the same database and talks to the same broker as
    the service and the other commands."""
    from basket_service.web.access import access_from_env

    access = access_from_env(args.host, args.port)
    open_db(settings).close()  # migrate (creates the schema on a first run), and fail early
    dash = start_dashboard(settings, access)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop.is_set() and not dash.stopped.is_set():
        stop.wait(1.0)
    dash.stop()
    return 1 if dash.failed.is_set() else 0


def session_command(args: argparse.Namespace, settings: Settings, db: Database) -> int:
    n = args.basket
    try:
        if args.command == "start":
            sid = sessions.start(settings, db, n)
            print("basket %d: session %d started" % (n, sid))
        elif args.command == "end":
            sid = sessions.end(settings, db, n)
            print("basket %d: session %d cancelled" % (n, sid))
        else:
            print_receipt(sessions.checkout(settings, db, n))
    except store.SessionError as e:
        raise Fail(str(e))
    except LinkError as e:
        raise Fail("basket %d: %s" % (n, e))
    return 0


def print_receipt(r: store.Receipt) -> None:
    print("receipt %d  basket %d  session %s  %s" % (r.id, r.basket, r.session, r.created_at))
    for ln in r.priced.lines:
        flag = "" if ln.known else "  (unknown code, priced 0)"
        print("  %-10s %-30s %3d x %8d = %9d%s" % (ln.code, ln.name[:30], ln.count,
                                                  ln.unit_price, ln.amount, flag))
    print("  total %d won" % r.priced.total)


def stock_command(args: argparse.Namespace, db: Database) -> int:
    rows = store.stock_levels(db, args.below, max(1, args.limit))
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
        return 0
    print("%-8s %7s %7s  %-10s %s" % ("CODE", "STOCK", "SALES", "CATEGORY", "NAME"))
    for r in rows:
        stock = r["stock"]
        oversold = isinstance(stock, int) and stock < 0
        print("%-8s %7s %7s  %-10s %s%s" % (r["code"], stock, r["sales"], r["category"] or "-",
                                            r["name"], "  (oversold)" if oversold else ""))
    return 0


def report(args: argparse.Namespace, db: Database) -> int:
    if args.command == "stats":
        for name, value in sorted(store.counters(db).items()):
            print("%s %d" % (name, value))
        return 0
    if args.command == "carts":
        rows = store.carts(db)
    elif args.command == "receipts":
        rows = store.receipts(db, max(1, args.limit))
    else:
        rows = store.history(db, args.basket)
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
        return 0
    for row in rows:
        print("  ".join("%s=%s" % (k, json.dumps(v, ensure_ascii=False)) for k, v in row.items()))
    return 0


MAX_SPEC = 100_000  # baskets one --baskets may name


def basket_spec(spec: str, settings: Settings, db: Database) -> list[int]:
    """--baskets: `all` (BASKETS when set, else every basket the database knows) or numbers
    and ranges (1-20, 1,3,5-7). ConfigError when malformed."""
    if spec.strip().lower() == "all":
        if settings.baskets is not None:
            ranges = settings.baskets.ranges
        else:
            known = fleet.known_baskets(db)
            if not known:
                raise Fail("--baskets all: the database knows no basket yet (name them, or set"
                           " BASKETS)")
            return known
    else:
        try:
            ranges = config.parse_baskets(spec).ranges
        except ConfigError:
            raise ConfigError("--baskets must be all or basket numbers and ranges like 1-20 or"
                              " 1,3,5-7; got %r" % spec[:40])
    if sum(hi - lo + 1 for lo, hi in ranges) > MAX_SPEC:
        raise ConfigError("--baskets names more than %d baskets" % MAX_SPEC)
    return [n for lo, hi in ranges for n in range(lo, hi + 1)]


def parse_settings(pairs: list[str]) -> dict[str, int | str]:
    """KEY=VALUE ... -> {KEY: value}, each checked (contract.remote_value); ConfigError on the
    first that is wrong, before anything is written or published."""
    out: dict[str, int | str] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError("settings must be KEY=VALUE, got %r" % pair[:40])
        try:
            out[key] = contract.remote_value(key, raw)
        except ValueError as e:
            raise ConfigError(str(e))
    return out


def config_command(args: argparse.Namespace, settings: Settings, db: Database) -> int:
    if args.config_command == "show":
        rows = fleet.configs(db, basket_spec(args.baskets, settings, db))
        for r in rows:
            if args.json:
                print(json.dumps(r, ensure_ascii=False, separators=(",", ":")))
            else:
                print("basket %d  desired rev %s %s  applied rev %s  config_error %s" % (
                    r["basket"], "-" if r["desired_rev"] is None else r["desired_rev"],
                    json.dumps(r["set"], sort_keys=True, separators=(",", ":")),
                    "-" if r["config_rev"] is None else r["config_rev"],
                    "-" if r["config_error"] is None else json.dumps(r["config_error"])))
        return 0
    values = parse_settings(args.settings)
    baskets = basket_spec(args.baskets, settings, db)
    try:
        with publisher(settings, retain=True) as publish:  # the broker first: if it is down,
            for n in baskets:                                # nothing is written
                rev, merged = fleet.set_config(db, n, values)
                payload = contract.config_payload(rev, merged)
                publish(contract.config_topic(n), payload)
                print("basket %d: config rev %d published %s" % (n, rev, payload.decode()))
    except LinkError as e:
        raise Fail(str(e))
    except ValueError as e:  # the merged set is over the contract's 1,024 bytes
        raise Fail("basket %d: %s; nothing changed for it" % (n, e))
    return 0


def release_add(args: argparse.Namespace, settings: Settings) -> int:
    from tools import deploy

    src = (args.src or deploy.ROOT).expanduser()
    try:
        where = releases.build(args.version, src, settings.release_dir)
    except ValueError as e:
        raise ConfigError(str(e))
    except releases.ReleaseError as e:
        raise Fail(str(e))
    except OSError as e:  # a full disk, a folder we may not write
        raise Fail("release %s not built: %s" % (args.version, e))
    rel = releases.read(settings.release_dir, args.version)
    count = {f: sum(1 for k in rel.files if k[0] == f) for f in releases.FLAVOURS}
    print("release %s built in %s from %s: %d py files, %d mpy files, manifest sha256 %s"
          % (rel.version, where, src, count["py"], count["mpy"], rel.sha256))
    return 0


def push_url(args: argparse.Namespace, settings: Settings) -> str:
    if args.url:
        return config.release_url(args.url, "--url")
    if settings.release_url is None:
        raise ConfigError("RELEASE_URL is not set and no --url given: name the address the "
                          "baskets fetch releases from, e.g. --url http://192.168.1.10:8080 "
                          "(the dashboard's `serve --http` / `web` address)")
    return settings.release_url


def release_push(args: argparse.Namespace, settings: Settings, db: Database) -> int:
    base = push_url(args, settings)
    try:
        rel = releases.read(settings.release_dir, args.version)
        keys = releases.load_keys(settings.ota_keys_file)
    except releases.ReleaseError as e:
        raise Fail(str(e))
    warning = releases.keys_file_warning(settings.ota_keys_file) if settings.ota_keys_file \
        else None
    if warning:
        print("warning: %s" % warning, file=sys.stderr)
    baskets = basket_spec(args.baskets, settings, db)
    url = releases.manifest_url(base, rel.version)
    refused = [n for n in baskets if n not in keys]
    for n in refused:  # named first; nothing is sent for them
        print("basket %d: refused: OTA_KEYS_FILE has no key for it (provision it with "
              "tools/provision.py); nothing sent" % n)
    go = [n for n in baskets if n in keys]
    if go:
        try:
            with publisher(settings, retain=True) as publish:  # the broker first
                for n in go:
                    payload = contract.ota_payload(n, rel.version, url, rel.sha256, keys[n])
                    publish(contract.ota_topic(n), payload)
                    releases.record_push(db, n, rel, url)
                    print("basket %d: release %s pushed (%s, sha256 %s)"
                          % (n, rel.version, url, rel.sha256[:16]))
        except LinkError as e:
            raise Fail(str(e))
        except ValueError as e:  # the push is over the contract's 1,024 bytes
            raise ConfigError(str(e))
    if refused:
        raise Fail("%d of %d baskets refused (no OTA key): %s" % (
            len(refused), len(baskets), ",".join(map(str, refused[:20]))
            + (" ..." if len(refused) > 20 else "")))
    return 0


def release_clear(args: argparse.Namespace, settings: Settings, db: Database) -> int:
    baskets = basket_spec(args.baskets, settings, db)
    try:
        with publisher(settings, retain=True) as publish:
            for n in baskets:
                publish(contract.ota_topic(n), b"")  # an empty retained message: none wanted
                releases.clear_push(db, n)
                print("basket %d: push withdrawn" % n)
    except LinkError as e:
        raise Fail(str(e))
    return 0


def release_table(rows: list[dict[str, object]]) -> list[str]:
    """`release status`'s table: basket, pushed release, the version it runs, its update's
    state and version, the error."""
    fmt = "%-6s %-12s %-12s %-24s %s"
    out = [fmt % ("BASKET", "PUSHED", "RUNNING", "UPDATE", "ERROR")]
    for r in rows:
        if r["ota_state"] is not None:
            update = "%s %s" % (r["ota_state"], r["ota_version"] or "")
        else:
            update = "off" if r["reported"] else "-"
        out.append(fmt % (r["basket"], r["pushed"] or "-", r["running"] or "-", update.strip(),
                          r["ota_error"] or "-"))
    return out


def release_command(args: argparse.Namespace, settings: Settings, db: Database) -> int:
    if args.release_command == "push":
        return release_push(args, settings, db)
    if args.release_command == "clear":
        return release_clear(args, settings, db)
    rows = fleet.fleet(db, datetime.now(timezone.utc), fleet.Thresholds(
        settings.health_min_free, settings.health_min_battery_mv))
    spec = None if args.baskets.strip().lower() == "all" else basket_spec(args.baskets,
                                                                          settings, db)
    if spec is None and settings.baskets is not None:
        spec = [n for lo, hi in settings.baskets.ranges for n in range(lo, hi + 1)]
    status = releases.status_rows(rows, spec)
    if args.json:
        for row in status:
            print(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
        return 0
    for line in release_table(status):
        print(line.rstrip())
    return 0


def _duration(s: object) -> str:
    if not isinstance(s, int):
        return "-"
    if s < 3600:
        return "%dm%02ds" % (s // 60, s % 60)
    if s < 86400:
        return "%dh%02dm" % (s // 3600, s % 3600 // 60)
    return "%dd%02dh" % (s // 86400, s % 86400 // 3600)


def _seen(stamp: object, now: datetime) -> str:
    try:
        t = datetime.fromisoformat(str(stamp))
    except ValueError:
        return "never" if stamp is None else str(stamp)
    return "%s ago" % _duration(max(0, int((now - t).total_seconds())))


def health_table(rows: list[dict[str, object]], now: datetime) -> list[str]:
    """`health`'s table: basket, version, uptime, last seen, RSSI, readers, battery, alerts."""
    out = ["%-6s %-9s %-8s %-12s %-5s %-16s %-8s %s" % (
        "BASKET", "VERSION", "UPTIME", "LAST SEEN", "RSSI", "READERS", "BATTERY", "ALERTS")]
    for r in rows:
        readers = r["readers"] if isinstance(r["readers"], list) else []
        ok = sum(1 for x in readers if x.get("state") == "ok")
        down = [str(x.get("name")) for x in readers if x.get("state") != "ok"]
        reader_text = "-" if not readers else "%d/%d ok%s" % (
            ok, len(readers), "" if not down else " (%s down)" % ",".join(down))
        alerts = r["alerts"] if isinstance(r["alerts"], list) else []
        out.append("%-6s %-9s %-8s %-12s %-5s %-16s %-8s %s" % (
            r["basket"], r["version"] or "-", _duration(r["uptime_s"]),
            _seen(r["last_seen"], now), "-" if r["rssi"] is None else r["rssi"], reader_text,
            "-" if r["battery_mv"] is None else "%s mV" % r["battery_mv"],
            "; ".join("%s: %s" % (a["kind"], a["text"]) for a in alerts) or "-"))
    return out


def health_command(args: argparse.Namespace, settings: Settings, db: Database) -> int:
    now = datetime.now(timezone.utc)
    rows = fleet.fleet(db, now, fleet.Thresholds(settings.health_min_free,
                                                 settings.health_min_battery_mv))
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
        return 0
    for line in health_table(rows, now):
        print(line.rstrip())
    return 0


def labels_command(args: argparse.Namespace, settings: Settings, db: Database) -> int:
    base = config.shop_url(args.url) if args.url else settings.shop_url
    if base is None:
        raise ConfigError("labels: say where phones reach the service: --url URL or SHOP_URL "
                          "(e.g. https://shop.example.com)")
    baskets = basket_spec(args.baskets, settings, db)
    try:
        text = labels.page(base, baskets)
        args.out.write_text(text, encoding="utf-8")
    except ValueError as e:
        raise ConfigError("labels: %s" % e)
    except OSError as e:
        raise ConfigError("labels: cannot write %s: %s" % (args.out, e.strerror or e))
    print("%d label(s) for %s/shop/<n> written to %s" % (len(baskets), base, args.out))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    where = "?"
    try:
        setup_logging()
        settings = config.load()
        if getattr(args, "client_id", None):
            settings = Settings(**{**settings.__dict__, "client_id": args.client_id})
        where = settings.describe_db()
        if args.command == "serve":
            return serve(args, settings)
        if args.command == "web":
            return run_web(args, settings)
        if args.command == "release" and args.release_command == "add":
            return release_add(args, settings)
        if args.command == "release" and args.release_command == "list":
            for version in releases.available(settings.release_dir):
                print(version)
            return 0
        db = open_db(settings)
        try:
            if args.command in ("start", "end", "checkout"):
                return session_command(args, settings, db)
            if args.command == "config":
                return config_command(args, settings, db)
            if args.command == "health":
                return health_command(args, settings, db)
            if args.command == "release":
                return release_command(args, settings, db)
            if args.command == "labels":
                return labels_command(args, settings, db)
            if args.command == "stock":
                return stock_command(args, db)
            return report(args, db)
        finally:
            db.close()
    except ConfigError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    except (Fail, DatabaseError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    except DB_ERRORS as e:  # sqlite3 / psycopg: a full disk, a locked or broken database
        print("error: database %s: %s" % (where, first_line(e)), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - one line, never a traceback (LOG_LEVEL=DEBUG has it)
        log.debug("unexpected error", exc_info=True)
        print("error: %s: %s" % (type(e).__name__, first_line(e)), file=sys.stderr)
        return 1
