"""Faults in the database: one bad row is reported (a warning) and skipped by every listing and
the dashboard's board, and refused by checkout; a full database disk gives the command line one
line and exit status 1, never a traceback; the WAL stays bounded."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest

from basket_service import catalog, cli, config, contract, sessions, store
from basket_service import db as dbmod
from tests.support.service_proc import cli as run_cli

PRODUCTS = catalog.parse("code,name,price,discount_percent\nMLON,melon,13900,0\n")


def fill(path: Path) -> None:
    """Baskets 1-3 with a cart each (3 in a session), and a receipt."""
    d = dbmod.open_db(config.load({"BASKET_DB": str(path)}))
    store.load_products(d, PRODUCTS)
    for n in (1, 2, 3):
        store.apply_update(d, contract.parse_update(n, b'{"id":%d,"list":{"MLON":%d}}' % (n, n)),
                           PRODUCTS, via="live")
    store.start_session(d, 1)
    store.checkout(d, 1)
    store.start_session(d, 3)
    d.close()


def break_rows(path: Path) -> None:
    with sqlite3.connect(str(path)) as c:
        c.execute("UPDATE baskets SET cart = 'not json' WHERE id = 2")
        c.execute("UPDATE baskets SET cart = '[1, 2]' WHERE id = 3")
        c.execute("DROP TRIGGER history_no_update")
        c.execute("UPDATE history SET cart = '{\"MLON\": \"many\"}' WHERE basket = 1")
        c.execute("UPDATE receipts SET total = 'lots'")


def test_bad_rows_are_reported_and_skipped(tmp_path, caplog):
    path = tmp_path / "b.db"
    fill(path)
    break_rows(path)
    d = dbmod.open_db(config.load({"BASKET_DB": str(path)}))
    with caplog.at_level(logging.WARNING, logger="basket_service"):
        board, newest = store.board(d)  # what GET /api/baskets answers (200, not 500)
        assert [b["basket"] for b in board] == [1] and newest == 1
        assert [c["basket"] for c in store.carts(d)] == [1]
        assert [h["basket"] for h in store.history(d)] == [2, 3]
        assert store.receipts(d) == []
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("bad row in baskets (2)" in m for m in warned), warned
    assert any("bad row in baskets (3)" in m for m in warned), warned
    assert any("bad row in history" in m for m in warned), warned
    assert any("bad row in receipts (1)" in m for m in warned), warned
    # Reported once, not on every read (the dashboard reads the board four times a second).
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="basket_service"):
        store.board(d)
    assert not caplog.records
    # Checkout of the basket whose stored cart is unreadable: refused, nothing changed.
    with pytest.raises(store.SessionError, match="basket 3: cannot check out: its stored cart"):
        store.checkout(d, 3)
    held = store.held(d, 3)
    assert held.in_use
    d.close()


def test_cli_skips_bad_rows_and_refuses_their_checkout(tmp_path):
    path = tmp_path / "b.db"
    fill(path)
    break_rows(path)
    env = {"PATH": "/usr/bin:/bin", "BASKET_DB": str(path)}
    for cmd, want in (("carts", [1]), ("history", [2, 3]), ("receipts", [])):
        r = run_cli(env, cmd, "--json")
        assert r.returncode == 0, r.stderr
        assert [json.loads(x)["basket"] for x in r.stdout.splitlines()] == want
        assert "skipping a bad row" in r.stderr and "Traceback" not in r.stderr


def test_checkout_refuses_an_unreadable_stored_cart(tmp_path, monkeypatch):
    path = tmp_path / "b.db"
    fill(path)
    d = dbmod.open_db(config.load({"BASKET_DB": str(path)}))
    held = store.held(d, 3)
    with sqlite3.connect(str(path)) as c:
        c.execute("UPDATE baskets SET cart = 'not json' WHERE id = 3")
    # The broker holds the cart the digest names: the digest matches, the text is broken.
    monkeypatch.setattr(sessions, "read_retained", lambda s, topics, **kw: [
        (topics[0], b'{"id":3,"list":{"MLON":3}}'), (topics[1], b"online")])
    with pytest.raises(store.SessionError, match="stored cart is unreadable"):
        sessions.checkout(config.load({"BASKET_DB": str(path)}), d, 3)
    assert store.held(d, 3) == held and store.receipts(d, 5)[0]["basket"] == 1
    d.close()


def full_disk(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every connection the command opens sees a database that cannot grow by one page: what
    SQLite answers on a full disk (SQLITE_FULL, 'database or disk is full')."""
    c = sqlite3.connect(str(path), isolation_level=None)
    pages = c.execute("PRAGMA page_count").fetchone()[0]
    c.execute("PRAGMA max_page_count = %d" % pages)
    for size in (3800, 400, 40, 1):  # use up the free pages, then the room on the last one
        with pytest.raises(sqlite3.OperationalError, match="full"):
            for _ in range(1000):
                c.execute("INSERT INTO sessions (basket, started_at) VALUES (99, ?)",
                          ("x" * size,))
    c.close()
    connect = dbmod.Database.connect

    def connect_full(self: dbmod.Database) -> None:
        connect(self)
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        self.conn.execute("PRAGMA max_page_count = %d" % pages)

    monkeypatch.setattr(dbmod.Database, "connect", connect_full)


def test_cli_full_database_disk_is_one_line(tmp_path, monkeypatch, capsys):
    path = tmp_path / "b.db"
    fill(path)
    full_disk(path, monkeypatch)
    monkeypatch.setenv("BASKET_DB", str(path))
    monkeypatch.setenv("BASKETS", "1-10")
    monkeypatch.setenv("MQTT_PORT", "1")  # never reached: the database refuses first
    for k in ("DATABASE_URL", "MQTT_USER", "MQTT_PASSWORD", "LOG_LEVEL"):
        monkeypatch.delenv(k, raising=False)
    assert cli.main(["start", "5"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == ["error: database sqlite %s: database or disk is full" % path], err
    monkeypatch.undo()
    d = dbmod.open_db(config.load({"BASKET_DB": str(path)}))
    assert not store.held(d, 5).in_use  # rolled back: nothing changed
    d.close()


def test_wal_is_bounded(tmp_path):
    """journal_size_limit: once a checkpoint has restarted the log, it is cut back."""
    path = tmp_path / "b.db"
    d = dbmod.open_db(config.load({"BASKET_DB": str(path)}))
    assert d.conn.execute("PRAGMA journal_size_limit").fetchone()[0] == dbmod.WAL_SIZE_LIMIT
    d.checkpoint_elsewhere()  # as the service: no automatic checkpoints in COMMIT
    blob = "x" * 3000
    with d.tx() as t:
        for i in range(8000):  # ~30 MB of WAL in one transaction
            t.run("INSERT INTO counters (name, value) VALUES (?, ?)", (blob + str(i), i))
    assert d.wal_bytes() > 3 * dbmod.WAL_SIZE_LIMIT
    ck = d.checkpointer()
    ck.execute("PRAGMA wal_checkpoint(PASSIVE)")
    with d.tx() as t:  # the next writer restarts the log; its commit cuts it to the limit
        t.bump("x")
    assert d.wal_bytes() <= dbmod.WAL_SIZE_LIMIT
    ck.close()
    d.close()
