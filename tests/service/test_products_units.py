"""The original product table's loader (products.py): the counts of the shipped copy, the
validation (each error names the line), and the tag codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from basket_service import catalog, products
from basket_service.products import ProductsError

HEADER = "name,price,stock,category,image_url,discount_rate,sales,tag,location,description,brand"


def csv_of(*lines: str, header: str = HEADER) -> str:
    return "\n".join((header,) + lines) + "\n"


def test_the_shipped_copy_has_the_originals_counts() -> None:
    rows = products.load()
    assert len(rows) == 4554
    assert len({r.category for r in rows}) == 14
    assert sum(1 for r in rows if r.stock == 0) == 300
    assert sum(1 for r in rows if r.discount_rate > 0) == 982
    assert rows[0].line == 2 and rows[-1].line == 4555
    assert all(r.image_url.startswith("https://") for r in rows)  # kept as text, not fetched
    first = rows[0]
    assert first.name == "[12brix 당도선별] 고당도 프리미엄 복숭아 4kg 8-12과"
    assert (first.price, first.stock, first.category, first.discount_rate, first.sales) == \
        (54900, 30, "과일", 0, 0)
    assert (first.hashtags, first.brand) == ("#간식과일 #달달한 #복숭아", "다농이네")


def test_the_copy_is_the_projects_own() -> None:
    assert products.ORIGINAL == Path(__file__).resolve().parents[2] / "data" / \
        "products_original.csv"
    assert "shared" not in products.ORIGINAL.parts


def test_codes_keep_the_samples_tags_and_number_the_rest() -> None:
    sample = catalog.load(products.SAMPLE)
    coded = products.coded(products.load(), products.names_to_codes(sample))
    assert len(coded) == 4554
    codes = list(coded)
    # The sample's products are the table's first rows (but PC2B, an extra batch of its own).
    assert codes[:10] == ["PCH4", "PCH2", "BLUE", "MLON", "WTMN", "WPCH", "APPL", "TMAT",
                          "CTMT", "AVCD"]
    assert codes[10] == "P00011" and codes[-1] == "P04554"
    assert coded["MLON"].name == sample["MLON"].name == "성주 참외 3~8입 봉"
    assert coded["WTMN"].stock == 0  # the original's zero-stock watermelon
    again = products.coded(products.load(), products.names_to_codes(sample))
    assert list(again) == codes  # deterministic
    cat = products.to_catalog(coded)
    assert cat["P00011"].price == coded["P00011"].price
    assert cat["P00011"].discount_percent == coded["P00011"].discount_rate


def test_codes_without_known_names() -> None:
    rows = products.parse(csv_of("a,100,1,x,,0,0,,,,", "b,200,0,y,,10,3,,,,"))
    assert list(products.coded(rows)) == ["P00001", "P00002"]
    assert products.tag_code(99999) == "P99999"
    with pytest.raises(ValueError):
        products.tag_code(0)


def test_a_known_code_colliding_is_refused() -> None:
    rows = products.parse(csv_of("a,100,1,x,,0,0,,,,", "b,200,0,y,,10,3,,,,"))
    with pytest.raises(ProductsError, match="line 3: code P00001 already given to line 2"):
        products.coded(rows, {"a": "P00001", "b": "P00001"})
    with pytest.raises(ProductsError, match="line 2: bad product code"):
        products.coded(rows, {"a": "-bad code"})


def test_optional_columns_may_be_missing() -> None:
    rows = products.parse(csv_of("사과,1000,-2,과일,5,1", header="name,price,stock,category,"
                                 "discount_rate,sales"))
    assert rows[0].stock == -2 and rows[0].image_url == "" and rows[0].brand == ""


def test_quoted_fields_and_a_bom() -> None:
    rows = products.parse("\ufeff" + csv_of('"a, with comma",100,1,x,,0,0,"#t #u",,"two\nlines",',
                                           "b,1,1,x,,0,0,,,,"))
    assert rows[0].name == "a, with comma" and rows[0].description == "two\nlines"
    assert rows[1].line == 4  # the row after a two-line one starts on line 4


@pytest.mark.parametrize("line, message", [
    ("a,abc,1,x,,0,0,,,,", "line 3: price must be a whole number, got 'abc'"),
    ("a,-1,1,x,,0,0,,,,", "line 3: price must be 0 to"),
    ("a,100,1.5,x,,0,0,,,,", "line 3: stock must be a whole number"),
    ("a,100,1,x,,101,0,,,,", "line 3: discount_rate must be 0 to 100, got 101"),
    ("a,100,1,x,,0,-3,,,,", "line 3: sales must be 0 to"),
    (",100,1,x,,0,0,,,,", "line 3: name is empty"),
    ("a,100,1, ,,0,0,,,,", "line 3: category is empty"),
    ("ok,100,1,x,,0,0,,,,", "line 3: name 'ok' already on line 2"),
    ("a,100,1,x,,0,0,,,,,extra", "line 3: 12 fields, the header has 11"),
    ("a,100,1,x", "line 3: 4 fields, the header has 11"),
    ("a,100,1,x,,0,0,,," + "d" * 2001 + ",", "line 3: description is longer than 2000"),
])
def test_errors_name_the_line(line: str, message: str) -> None:
    with pytest.raises(ProductsError) as e:
        products.parse(csv_of("ok,100,1,x,,0,0,,,,", line), "p.csv")
    assert str(e.value).startswith("p.csv " + message), str(e.value)


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(ProductsError, match="header lacks column.s. stock,sales"):
        products.parse("name,price,category,discount_rate\na,1,x,0\n")
    with pytest.raises(ProductsError, match="no products"):
        products.parse(HEADER + "\n")
    with pytest.raises(ProductsError, match="empty file"):
        products.parse("")
    bad = tmp_path / "p.csv"
    bad.write_bytes(HEADER.encode() + b"\n\xff,1,1,x,,0,0,,,,\n")
    with pytest.raises(ProductsError, match="not UTF-8"):
        products.load(bad)
    with pytest.raises(ProductsError, match="cannot read"):
        products.load(tmp_path / "missing.csv")
