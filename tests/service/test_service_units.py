"""Unit tests of the pure parts: catalogue parsing and pricing, update validation, settings,
and the command line's handling of bad settings (exit 2, the variable named, no traceback)."""

from __future__ import annotations

import hashlib
import json

import pytest

from basket_service import catalog, config, contract
from tests.support.service_proc import CATALOG, cli

HEADER = "code,name,price,discount_percent\n"


def test_sample_catalogue_parses_with_korean_names():
    products = catalog.load(CATALOG)
    assert len(products) == 11
    assert products["MLON"] == catalog.Product(
        "MLON", "성주 참외 3~8입 봉", 13900, 0, 50, "과일",
        "https://sitem.ssgcdn.com/00/12/84/item/1000549841200_i1_290.jpg")
    assert products["PCH4"].unit_price == 54900
    # Stock, category and picture come from the original table for the names it has.
    assert products["WTMN"].stock == 0  # the original's zero-stock watermelon
    assert (products["PC2B"].stock, products["PC2B"].category) == (None, "")  # not in it


def test_discount_rounds_down_so_the_price_rounds_up():
    p = catalog.parse(HEADER + "A,a,999,33\nB,b,100,100\nC,c,7,0\nT,t,6980,33\n")
    assert p["A"].unit_price == 670  # the discount 329.67 -> 329; the floor said 669
    assert p["B"].unit_price == 0
    assert p["C"].unit_price == 7
    assert p["T"].unit_price == 4677  # 6980 at 33 %: 4676 by the old floor
    priced = catalog.price({"A": 2, "T": 1}, p)
    assert priced.total == 2 * 670 + 4677
    assert [(ln.unit_price, ln.price, ln.discount_percent) for ln in priced.lines] == [
        (670, 999, 33), (4677, 6980, 33)]


def test_optional_columns_stock_category_image_url():
    p = catalog.parse("code,name,price,discount_percent,stock,category,image_url\n"
                      "A,a,100,0,-3,과일,https://example.invalid/a.jpg\n"
                      "B,b,100,0,,,\n"
                      "C,c,100,0, 7 ,  채소 ,\n")
    assert p["A"] == catalog.Product("A", "a", 100, 0, -3, "과일", "https://example.invalid/a.jpg")
    assert (p["B"].stock, p["B"].category, p["B"].image_url) == (None, "", "")
    assert (p["C"].stock, p["C"].category) == (7, "채소")
    line = catalog.price({"A": 1}, p).lines[0]
    assert (line.price, line.discount_percent, line.image_url) == (
        100, 0, "https://example.invalid/a.jpg")
    # Without the columns: no stock, no category, no picture.
    assert catalog.parse(HEADER + "A,a,1,0\n")["A"] == catalog.Product("A", "a", 1, 0, None, "", "")


def test_extra_columns_any_order_and_bom_are_fine():
    p = catalog.parse("\ufeffname_en,price,code,discount_percent,name\nMelon,1000,M1,10,참외\n")
    assert p == {"M1": catalog.Product("M1", "참외", 1000, 10)}


@pytest.mark.parametrize("text,needle", [
    ("code,name,price\nA,a,1\n", "discount_percent"),
    (HEADER + "A,a,abc,0\n", "price must be an integer"),
    (HEADER + "A,a,-1,0\n", "price must be"),
    (HEADER + "A,a,100,101\n", "discount_percent must be 0-100"),
    (HEADER + "A B,a,100,0\n", "bad product code"),
    (HEADER + "A,a,100,0\nA,b,1,0\n", "duplicate product code"),
    (HEADER + "A,a,100,0,extra\n", "more fields"),
    ("code,name,price,discount_percent,stock\nA,a,1,0,x\n", "stock must be an integer"),
    ("code,name,price,discount_percent,stock\nA,a,1,0,1.5\n", "stock must be an integer"),
    ("code,name,price,discount_percent,stock\nA,a,1,0,1000000001\n", "stock must be"),
    ("code,name,price,discount_percent,stock\nA,a,1,0,-1000000001\n", "stock must be"),
    ("code,name,price,discount_percent,image_url\nA,a,1,0," + "u" * 2001 + "\n",
     "image_url is longer than 2000"),
    (HEADER, "no products"),
])
def test_bad_catalogues_are_refused_with_the_line(text, needle):
    with pytest.raises(catalog.CatalogError) as e:
        catalog.parse(text, "cat.csv")
    assert needle in str(e.value) and "cat.csv" in str(e.value)


def test_non_utf8_catalogue_is_refused(tmp_path):
    f = tmp_path / "c.csv"
    f.write_bytes((HEADER + "A,참외,1,0\n").encode("euc-kr"))
    with pytest.raises(catalog.CatalogError, match="not UTF-8"):
        catalog.load(f)


def test_pricing_flags_unknown_codes_at_zero():
    products = catalog.parse(HEADER + "A,a,1000,10\nB,b,250,0\n")
    priced = catalog.price({"B": 2, "A": 3, "ZZ": 5}, products)
    assert priced.total == 3 * 900 + 2 * 250
    assert priced.unknown == ["ZZ"]
    assert [(ln.code, ln.amount) for ln in priced.lines] == [("A", 2700), ("B", 500), ("ZZ", 0)]


def test_update_validation_accepts_the_contract_form():
    upd = contract.parse_update(7, b'{"id":7,"list":{"MLON":2,"a-b.c_9":999,"Z":0}}')
    assert upd.items == {"MLON": 2, "a-b.c_9": 999, "Z": 0}
    assert upd.cart == '{"MLON":2,"Z":0,"a-b.c_9":999}'
    # Same cart, other byte order: same digest.
    other = contract.parse_update(7, b'{"list":{"Z":0,"a-b.c_9":999,"MLON":2},"id":7}')
    assert other.digest == upd.digest


@pytest.mark.parametrize("payload,reason", [
    (b'{"id":8,"list":{}}', "id_mismatch"),
    (b'{"id":true,"list":{}}', "bad_shape"),
    (b"null", "bad_shape"),
    (b'{"id":7}', "bad_shape"),
    (b'{"id":7,"list":{"A":-1}}', "bad_count"),
    (b'{"id":7,"list":{"A":1e3}}', "bad_count"),
    (b'{"id":7,"list":{"":1}}', "bad_code"),
    (b'{"id":7,"list":{"\xc3\xa9":1}}', "bad_code"),
    (b'{"id":7,"list":{}}' + b" " * 4096, "oversized"),
    (b"{" * 2000, "bad_json"),
])
def test_update_validation_rejects(payload, reason):
    with pytest.raises(contract.Rejected) as e:
        contract.parse_update(7, payload)
    assert e.value.reason == reason


@pytest.mark.parametrize("topic,ok", [
    ("basket/1/update", (1, "update")), ("basket/42/availability", (42, "availability")),
    ("basket/0/update", None), ("basket/01/update", None), ("basket/-1/update", None),
    ("basket/x/update", None), ("basket/1/status", None), ("basket/1/update/x", None),
    ("other/1/update", None), ("basket/1234567890/update", None),
])
def test_topics(topic, ok):
    if ok:
        assert contract.parse_topic(topic) == ok
    else:
        with pytest.raises(contract.Rejected):
            contract.parse_topic(topic)


def test_total_payload_is_compact_and_names_the_cart():
    digest = contract.cart_digest(contract.encode_cart({"MLON": 2}))
    assert digest == hashlib.sha256(b'{"MLON":2}').hexdigest()[:32]
    assert contract.total_payload(3, 27800, digest) == (
        b'{"msg":"total","payload":{"basketid":3,"totalprice":27800,"cart":"%s"}}'
        % digest.encode())
    assert contract.cart_digest(contract.encode_cart({})) == \
        hashlib.sha256(b"{}").hexdigest()[:32]
    # Without a digest: the original backend's payload (the examples send it).
    assert contract.total_payload(3, 27800) == \
        b'{"msg":"total","payload":{"basketid":3,"totalprice":27800}}'


def test_settings_defaults_and_redaction():
    s = config.load({"MQTT_USER": "service", "MQTT_PASSWORD": "s3cret-pw"})
    assert (s.mqtt_host, s.mqtt_port, s.backend, str(s.db_path)) == \
        ("localhost", 1883, "sqlite", "basket.db")
    assert "s3cret-pw" not in repr(s)
    pg = config.load({"DATABASE_URL": "postgresql://u:s3cret-pw@db:5432/basket"})
    assert pg.backend == "postgresql"
    assert "s3cret-pw" not in pg.describe_db() and "s3cret-pw" not in repr(pg)


@pytest.mark.parametrize("env,var", [
    ({"MQTT_PORT": "eighty"}, "MQTT_PORT"),
    ({"MQTT_PORT": "70000"}, "MQTT_PORT"),
    ({"MQTT_HOST": "a b"}, "MQTT_HOST"),
    ({"MQTT_PASSWORD": "x"}, "MQTT_PASSWORD"),
    ({"DATABASE_URL": "mysql://u:pw@h/db"}, "DATABASE_URL"),
    ({"BASKET_DB": ""}, "BASKET_DB"),
    ({"MQTT_CAFILE": "/nonexistent/ca.pem"}, "MQTT_CAFILE"),
    ({"BASKET_DB_SYNC": "off"}, "BASKET_DB_SYNC"),
])
def test_bad_settings_name_the_variable(env, var):
    with pytest.raises(config.ConfigError, match=var):
        config.load(env)


@pytest.mark.parametrize("extra,var", [
    ({"MQTT_PORT": "nope"}, "MQTT_PORT"),
    ({"DATABASE_URL": "mysql://root:s3cret-pw@h/db"}, "DATABASE_URL"),
    ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
])
def test_cli_bad_settings_exit_2_without_traceback(tmp_path, extra, var):
    env = {"PATH": "/usr/bin:/bin", "BASKET_DB": str(tmp_path / "b.db"),
           "MQTT_PASSWORD": "s3cret-pw", "MQTT_USER": "service", **extra}
    r = cli(env, "carts")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert var in r.stderr and "Traceback" not in r.stderr and "s3cret-pw" not in r.stderr


def test_cli_bad_catalogue_exit_2(tmp_path):
    bad = tmp_path / "c.csv"
    bad.write_text("code,name\nA,a\n", encoding="utf-8")
    r = cli({"PATH": "/usr/bin:/bin", "BASKET_DB": str(tmp_path / "b.db")},
            "serve", "--catalog", str(bad))
    assert r.returncode == 2 and "--catalog" in r.stderr and "price" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_reports_on_an_empty_database(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "BASKET_DB": str(tmp_path / "b.db")}
    for cmd in ("carts", "receipts", "history"):
        r = cli(env, cmd, "--json")
        assert (r.returncode, r.stdout) == (0, ""), r.stderr
    r = cli(env, "end", "3")
    assert r.returncode == 1 and "not in use" in r.stderr
    assert (tmp_path / "b.db").exists()


@pytest.mark.parametrize("env,level", [({}, 1), ({"BASKET_DB_SYNC": "full"}, 2),
                                       ({"BASKET_DB_SYNC": "NORMAL"}, 1)])
def test_sqlite_sync_setting(tmp_path, env, level):
    from basket_service import db as dbmod

    d = dbmod.open_db(config.load({"BASKET_DB": str(tmp_path / "b.db"), **env}))
    assert d.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert d.conn.execute("PRAGMA synchronous").fetchone()[0] == level  # 1 NORMAL, 2 FULL
    d.close()


def test_history_is_append_only(tmp_path):
    from basket_service import db as dbmod
    from basket_service import store

    settings = config.load({"BASKET_DB": str(tmp_path / "b.db")})
    d = dbmod.open_db(settings)
    products = catalog.parse(HEADER + "A,a,100,0\n")
    store.apply_update(d, contract.parse_update(1, b'{"id":1,"list":{"A":1}}'), products,
                       via="live")
    with pytest.raises(Exception, match="append-only"):
        with d.tx() as t:
            t.run("DELETE FROM history")
    assert len(store.history(d)) == 1
    d.close()


def test_cli_start_rolls_back_when_the_broker_is_unreachable(tmp_path):
    from tests.support.broker import free_port

    env = {"PATH": "/usr/bin:/bin", "BASKET_DB": str(tmp_path / "b.db"),
           "MQTT_HOST": "127.0.0.1", "MQTT_PORT": str(free_port()), "BASKETS": "1-10"}
    r = cli(env, "start", "5")
    assert r.returncode == 1 and "cannot reach MQTT broker" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    carts = [json.loads(x) for x in cli(env, "carts", "--json").stdout.splitlines()]
    assert [(c["basket"], c["in_use"]) for c in carts] == [(5, False)]


def test_reconcile_setting():
    from basket_service import cli as cli_mod

    assert cli_mod.reconcile_s({}) == 60.0
    assert cli_mod.reconcile_s({"RECONCILE_S": "0"}) == 0.0
    assert cli_mod.reconcile_s({"RECONCILE_S": " 5 "}) == 5.0
    for bad in ("-1", "0.5", "soon", "100000"):
        with pytest.raises(config.ConfigError, match="RECONCILE_S"):
            cli_mod.reconcile_s({"RECONCILE_S": bad})
