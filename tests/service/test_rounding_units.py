"""The discounted unit price by the original backend's rule (rounding.unit_price), over every
row of the original product table, against the other rule (the front end's, and catalog.py's
before it took this one) to show where the two differ."""

from __future__ import annotations

import csv

import pytest

from basket_service import products
from basket_service.rounding import unit_price


def original_rows() -> list[tuple[int, int]]:
    with products.ORIGINAL.open(encoding="utf-8", newline="") as f:
        return [(int(r["price"]), int(r["discount_rate"])) for r in csv.DictReader(f)]


def test_every_original_row_both_ways() -> None:
    rows = original_rows()
    assert len(rows) == 4554
    differ = 0
    for price, rate in rows:
        backend = price - price * rate // 100  # the original backend, written out here
        front = price * (100 - rate) // 100  # its front end (and catalog.Product before)
        got = unit_price(price, rate)
        assert got == backend, (price, rate)
        assert front <= got <= front + 1, (price, rate)
        differ += got != front
    # 982 rows are discounted; in 611 of them the two rules give prices a won apart.
    assert sum(1 for _, rate in rows if rate) == 982
    assert differ == 611


@pytest.mark.parametrize("price, rate, want", [
    (14980, 3, 14531),  # discount 449.4 -> 449; the front end said 14530
    (1990, 30, 1393),  # 597 exactly: both rules agree
    (999, 0, 999),
    (999, 100, 0),
    (0, 50, 0),
    (1, 1, 1),  # the discount of 0.01 won rounds to nothing
    (101, 99, 2),
])
def test_examples(price: int, rate: int, want: int) -> None:
    assert unit_price(price, rate) == want


@pytest.mark.parametrize("price, rate", [(-1, 0), (100, -1), (100, 101), (True, 0),
                                         (100, 2.5), ("100", 0)])
def test_refuses_what_is_not_a_price_or_a_percent(price: object, rate: object) -> None:
    with pytest.raises(ValueError):
        unit_price(price, rate)  # type: ignore[arg-type]
