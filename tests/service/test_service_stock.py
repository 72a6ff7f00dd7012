"""Stock and sales (issue 16) on both databases: migration 4, the catalogue loaded as an upsert
that keeps the database's stock, checkout moving stock and sales in the receipt's transaction
once per payment, the receipt's link key, the low-stock listing, and `serve --catalog
original` / `--reset-stock` as real processes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from basket_service import catalog, cli, config, contract, products, store
from basket_service import db as dbmod
from basket_service.db import DB_ERRORS, Database, open_db
from tests.support.service_proc import cli as run_cli
from tests.support.service_proc import service_env

CATALOG = """code,name,price,discount_percent,stock,category,image_url
MLON,성주 참외 3~8입 봉,13900,0,50,과일,https://example.invalid/mlon.jpg
WTMN,부여 못난이 수박 7kg이상,22800,0,0,과일,
TMAT,맑은청 찰토마토 1.2kg 팩,6980,33,10,과일,
NOST,재고 없는 상품,1000,0,,,
"""
TMAT = 4677  # 6980 at 33 %: the discount (2303.4) rounds down, the price up


@pytest.fixture
def sdb(any_db: dict[str, str]) -> Iterator[Database]:
    d = open_db(config.load(any_db))
    yield d
    d.close()


def stock_of(d: Database) -> dict[str, tuple[int, int]]:
    with d.read() as t:
        return {c: (int(s), int(n)) for c, s, n in t.all("SELECT code, stock, sales FROM products")}


def shop(d: Database, basket: int, cart: dict[str, int]) -> None:
    """A session on the basket with this cart priced."""
    store.start_session(d, basket)
    with d.tx() as t:
        prods = store.read_products(t)
    store.apply_update(d, contract.parse_update(basket, json.dumps(
        {"id": basket, "list": cart}).encode()), prods, via="live")


def test_migration_4_columns_and_indexes(sdb):
    with sdb.read() as t:
        assert t.one("SELECT version FROM schema_version") == (len(dbmod.MIGRATIONS),)
        t.one("SELECT stock, sales, category, image_url FROM products LIMIT 1")
        t.one("SELECT payment_id, receipt_key FROM receipts LIMIT 1")
    # NULL payment ids are distinct (staff checkouts); a repeated one is refused.
    with sdb.tx() as t:
        for pid in (None, None, "pay-1"):
            t.run("INSERT INTO receipts (basket, created_at, total, unknown, payment_id)"
                  " VALUES (1, 'x', 0, '', ?)", (pid,))
    with pytest.raises(DB_ERRORS), sdb.tx() as t:
        t.run("INSERT INTO receipts (basket, created_at, total, unknown, payment_id)"
              " VALUES (1, 'x', 0, '', 'pay-1')")
    assert sdb.migrate() == len(dbmod.MIGRATIONS)  # again: nothing to do


def test_migration_4_upgrades_a_version_3_database(any_db, monkeypatch):
    """An existing database (products and receipts in it) gains the columns: stock and sales
    0, no category or picture, old receipts without payment or key."""

    monkeypatch.setattr(dbmod, "MIGRATIONS", dbmod.MIGRATIONS[:3])
    d = open_db(config.load(any_db))
    with d.tx() as t:
        assert t.one("SELECT version FROM schema_version") == (3,)
        t.run("INSERT INTO products (code, name, price, discount_percent, loaded_at)"
              " VALUES ('MLON', 'melon', 13900, 0, 'x')")
        t.run("INSERT INTO receipts (basket, created_at, total, unknown) VALUES (1, 'x', 5, '')")
    monkeypatch.undo()
    assert d.migrate() == len(dbmod.MIGRATIONS)
    assert stock_of(d) == {"MLON": (0, 0)}
    with d.read() as t:
        assert t.one("SELECT category, image_url FROM products") == ("", "")
    assert [(r["payment_id"], r["key"]) for r in store.receipts(d)] == [(None, "")]
    d.close()


def test_loading_keeps_the_databases_stock(sdb):
    cat = catalog.parse(CATALOG)
    assert store.load_products(sdb, cat) == store.Loaded(4, 0, 0)
    assert stock_of(sdb) == {"MLON": (50, 0), "WTMN": (0, 0), "TMAT": (10, 0), "NOST": (0, 0)}
    with sdb.tx() as t:  # sold since
        t.run("UPDATE products SET stock = 47, sales = 3 WHERE code = 'MLON'")
    # The service reloads the catalogue at every start: new name and price, same stock.
    changed = CATALOG.replace("13900,0,50,과일", "14900,10,99,채소").replace("NOST", "NEW1")
    assert store.load_products(sdb, catalog.parse(changed)) == store.Loaded(1, 3, 1)
    with sdb.read() as t:
        prods = store.read_products(t)
    assert prods["MLON"] == catalog.Product("MLON", "성주 참외 3~8입 봉", 14900, 10, 47, "채소",
                                            "https://example.invalid/mlon.jpg")
    assert stock_of(sdb) == {"MLON": (47, 3), "WTMN": (0, 0), "TMAT": (10, 0), "NEW1": (0, 0)}
    # --reset-stock: the file's stock where it gives one; sales stay counted.
    store.load_products(sdb, catalog.parse(changed), reset_stock=True)
    assert stock_of(sdb)["MLON"] == (99, 3)
    with sdb.tx() as t:
        t.run("UPDATE products SET stock = 5 WHERE code = 'NEW1'")
    store.load_products(sdb, catalog.parse(changed), reset_stock=True)
    assert stock_of(sdb)["NEW1"] == (5, 0)  # the file gives none for it: kept


def test_checkout_moves_stock_and_sales(sdb):
    store.load_products(sdb, catalog.parse(CATALOG))
    shop(sdb, 1, {"MLON": 2, "WTMN": 1, "TMAT": 3, "NOPE": 1, "NOST": 0})
    lines = {ln["code"]: ln for ln in store.board(sdb)[0][0]["lines"]}
    assert (lines["MLON"]["image_url"], lines["TMAT"]["price"], lines["TMAT"]["unit_price"],
            lines["TMAT"]["discount_percent"]) == ("https://example.invalid/mlon.jpg", 6980,
                                                   TMAT, 33)
    r = store.checkout(sdb, 1)
    assert r.priced.total == 2 * 13900 + 22800 + 3 * TMAT
    assert r.payment_id is None and len(r.key) == 22
    # The zero-stock watermelon still sells: its stock goes negative. Unknown codes and
    # zero counts move nothing.
    assert stock_of(sdb) == {"MLON": (48, 2), "WTMN": (-1, 1), "TMAT": (7, 3), "NOST": (0, 0)}
    assert store.stock_levels(sdb, 0) == [
        {"code": "WTMN", "name": "부여 못난이 수박 7kg이상", "stock": -1, "sales": 1,
         "category": "과일"},
        {"code": "NOST", "name": "재고 없는 상품", "stock": 0, "sales": 0, "category": ""}]
    assert [x["code"] for x in store.stock_levels(sdb)] == ["WTMN", "NOST"]  # 5 or less
    assert [x["code"] for x in store.stock_levels(sdb, 10)] == ["WTMN", "NOST", "TMAT"]
    assert [x["code"] for x in store.stock_levels(sdb, 10**9, limit=2)] == ["WTMN", "NOST"]
    assert store.stock_count(sdb, 10) == 3
    assert store.receipts(sdb)[0] == store.receipt_doc(r)


def test_stock_moves_in_the_receipts_transaction(sdb):
    """The stock update fails (a trigger refuses it): the receipt written before it in the
    same transaction is gone too, the session stays open, nothing moved."""
    store.load_products(sdb, catalog.parse(CATALOG))
    shop(sdb, 2, {"MLON": 1})
    with sdb.tx() as t:
        if sdb.backend == "postgresql":
            t.run("CREATE FUNCTION no_stock() RETURNS trigger LANGUAGE plpgsql AS"
                  " $$ BEGIN RAISE EXCEPTION 'stock frozen'; END $$")
            t.run("CREATE TRIGGER stock_frozen BEFORE UPDATE ON products"
                  " FOR EACH ROW EXECUTE FUNCTION no_stock()")
        else:
            t.run("CREATE TRIGGER stock_frozen BEFORE UPDATE ON products"
                  " BEGIN SELECT RAISE(ABORT, 'stock frozen'); END")
    with pytest.raises(DB_ERRORS, match="stock frozen"):
        store.checkout(sdb, 2)
    assert store.receipts(sdb) == [] and stock_of(sdb)["MLON"] == (50, 0)
    assert store.held(sdb, 2).in_use
    with sdb.tx() as t:
        t.run("DROP TRIGGER stock_frozen" + (" ON products" if sdb.backend == "postgresql"
                                             else ""))
    store.checkout(sdb, 2)
    assert stock_of(sdb)["MLON"] == (49, 1) and len(store.receipts(sdb)) == 1


def test_a_retried_checkout_moves_stock_once(sdb):
    store.load_products(sdb, catalog.parse(CATALOG))
    shop(sdb, 3, {"MLON": 2, "TMAT": 1})
    first = store.checkout(sdb, 3, payment_id="pay-7f3a")
    assert first.payment_id == "pay-7f3a"
    # The basket is free now; the same payment's checkout again (a retry, a second "paid")
    # returns the same receipt and changes nothing.
    again = store.checkout(sdb, 3, payment_id="pay-7f3a")
    assert (again.id, again.key, again.payment_id, again.session) == \
        (first.id, first.key, first.payment_id, first.session)
    assert store.receipt_doc(again) == store.receipt_doc(first)
    assert stock_of(sdb)["MLON"] == (48, 2) and stock_of(sdb)["TMAT"] == (9, 1)
    assert len(store.receipts(sdb)) == 1
    # Even once the basket has a new session: the payment is the receipt's, not billed again.
    shop(sdb, 3, {"MLON": 5})
    assert store.checkout(sdb, 3, payment_id="pay-7f3a").id == first.id
    assert store.held(sdb, 3).in_use and stock_of(sdb)["MLON"] == (48, 2)
    # Without a payment id the basket still checks out as before (staff), and moves stock.
    other = store.checkout(sdb, 3)
    assert other.id != first.id and stock_of(sdb)["MLON"] == (43, 7)
    assert store.receipt_by_payment(sdb, "pay-7f3a") == store.receipt_doc(first)
    assert store.receipt_by_payment(sdb, "pay-none") is None
    assert store.receipt_by_payment(sdb, "") is None


def test_receipt_by_key(sdb):
    store.load_products(sdb, catalog.parse(CATALOG))
    shop(sdb, 4, {"TMAT": 2, "NOPE": 1})
    r = store.checkout(sdb, 4)
    doc = store.receipt_by_key(sdb, r.key)
    assert doc == store.receipt_doc(r)
    assert doc is not None and doc["key"] == r.key and doc["total"] == 2 * TMAT
    assert doc["unknown"] == ["NOPE"]
    for bad in ("", "short", r.key[:-1] + ("A" if r.key[-1] != "A" else "B"), r.key + "/x",
                "../" + r.key, "x" * 65, None, 12345, r.key.encode()):
        assert store.receipt_by_key(sdb, bad) is None, bad


def test_the_original_catalogue(sdb):
    cat = cli.load_catalog("original")
    assert len(cat) == 4554
    assert cat["WTMN"].stock == 0 and cat["MLON"].name == "성주 참외 3~8입 봉"
    p = cat["P00012"]  # the 12th row: a discounted pineapple
    assert (p.price, p.discount_percent, p.unit_price, p.category) == (8490, 15, 7217, "과일")
    assert p.image_url.startswith("https://") and p.stock == 50
    assert store.load_products(sdb, cat) == store.Loaded(4554, 0, 0)
    assert store.stock_count(sdb, 0) == 300
    # The sample after it: the sample's codes stay (stock kept), the rest go.
    assert store.load_products(sdb, catalog.load(products.SAMPLE)) == store.Loaded(1, 10, 4544)


def test_serve_catalog_original_and_reset_stock(broker, sqlite_db, services, tmp_path):
    env = service_env(broker.port, sqlite_db)
    svc = services(env, "--catalog", "original").start()
    svc.wait_line(r"catalogue original: 4554 products loaded into .* \(4554 added, 0 updated,"
                  r" 0 removed\)")
    assert svc.stop() == 0
    r = run_cli(env, "stock", "--below", "0", "--limit", "1000", "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(rows) == 300 and "WTMN" in {x["code"] for x in rows}
    # A stock changed in the database survives the next start; --reset-stock restores it.
    d = open_db(config.load(env))
    with d.tx() as t:
        t.run("UPDATE products SET stock = -2 WHERE code = 'MLON'")
    d.close()
    svc = services(env, "--catalog", "original").start()
    svc.wait_line(r"\(0 added, 4554 updated, 0 removed\)")
    assert svc.stop() == 0
    r = run_cli(env, "stock", "--below", "-1")
    assert r.returncode == 0 and "MLON" in r.stdout and "(oversold)" in r.stdout, r.stderr
    svc = services(env, "--catalog", "original", "--reset-stock").start()
    svc.wait_line(r"stock reset from the catalogue")
    assert svc.stop() == 0
    r = run_cli(env, "stock", "--below", "-1", "--json")
    assert (r.returncode, r.stdout) == (0, ""), r.stderr
    r = run_cli(env, "stock", "--below", "x")
    assert r.returncode == 2 and "--below" in r.stderr
    assert svc.count("Traceback") == 0
