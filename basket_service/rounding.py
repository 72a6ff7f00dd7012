"""The discounted unit price, as the original backend computed it: the discount is rounded
down to the won, so the price is rounded up (`price - price * rate / 100` in integers). Pure.

The one rule of the project (docs/shopper.md, "Rounding"): catalog.Product.unit_price is this,
so every total, board line and receipt is priced by it."""

from __future__ import annotations


def unit_price(price: int, percent: int) -> int:
    """`price - floor(price * percent / 100)`: never less than the shelf system computed.
    `price` is a whole number of won (0 or more), `percent` 0-100; ValueError otherwise."""
    for name, value in (("price", price), ("percent", percent)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError("%s must be an integer, got %r" % (name, value))
    if price < 0:
        raise ValueError("price must be 0 or more, got %d" % price)
    if not 0 <= percent <= 100:
        raise ValueError("percent must be 0-100, got %d" % percent)
    return price - price * percent // 100
