"""Payment providers (payments.py): the counter's checkout code and its confirmation, the test
provider, idempotency (a retried checkout or a second confirmation never pays twice), cancel,
the registry, the bound on memory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from basket_service import payments
from basket_service.payments import (
    CANCELLED,
    DECLINED,
    PAID,
    PENDING,
    Checkout,
    CounterProvider,
    PaymentError,
    PaymentProvider,
    TestProvider,
    UnknownPayment,
)


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        self.t += 1
        return self.t


CART = Checkout(basket=3, session=17, digest="a" * 32, total=27800)


def codes(*values: str) -> Iterator[str]:
    yield from values
    n = 0
    while True:
        n += 1
        yield "C%05d" % n


def test_counter_gives_a_short_code_staff_confirm_once() -> None:
    counter = CounterProvider(Clock())
    pay = counter.begin(CART)
    assert pay.status == PENDING and pay.provider == "counter"
    assert pay.code is not None and len(pay.code) == 6
    assert set(pay.code) <= set(payments.CODE_ALPHABET)
    assert counter.pending() == [pay]
    done = counter.confirm(pay.code.lower()[:3] + "-" + pay.code[3:])  # as staff may type it
    assert done.status == PAID and done.id == pay.id and done.code == pay.code
    assert counter.confirm(pay.code) == done  # twice: the same payment, paid once
    assert counter.status(pay.id) == done
    assert counter.pending() == []
    assert counter.begin(CART) == done  # a retried checkout after paying: nothing new
    assert done.doc() == {"payment": pay.id, "provider": "counter", "status": "paid",
                          "basket": 3, "session": 17, "total": 27800, "code": pay.code,
                          "redirect_url": None}


def test_a_retried_checkout_gets_the_same_payment() -> None:
    counter = CounterProvider(Clock())
    first = counter.begin(CART)
    assert counter.begin(CART) == first
    assert counter.begin(Checkout(3, 17, "a" * 32, 27800)) == first
    assert len(counter.pending()) == 1


def test_a_changed_cart_replaces_a_pending_payment() -> None:
    counter = CounterProvider(Clock(), code_source=iter(codes("AAAAAA", "AAAAAA", "CCCCCC"))
                              .__next__)
    old = counter.begin(CART)
    new = counter.begin(Checkout(3, 17, "b" * 32, 30000))
    assert new.id != old.id and new.code == "CCCCCC"  # AAAAAA was still held when drawn
    assert counter.status(old.id).status == CANCELLED
    with pytest.raises(PaymentError, match="AAAAAA was cancelled"):
        counter.confirm("AAAAAA")  # the cancelled code confirms nothing
    assert counter.confirm("CCCCCC").checkout.total == 30000


def test_cancel() -> None:
    counter = CounterProvider(Clock())
    pay = counter.begin(CART)
    gone = counter.cancel(pay.id)
    assert gone.status == CANCELLED
    assert counter.cancel(pay.id) == gone  # again: unchanged
    assert pay.code is not None
    with pytest.raises(PaymentError, match="was cancelled"):
        counter.confirm(pay.code)
    again = counter.begin(CART)  # the shopper tries again: a new payment, a new code
    assert again.id != pay.id and again.status == PENDING and again.code != pay.code
    paid = counter.confirm(again.code or "")
    with pytest.raises(PaymentError, match="paid; it cannot be cancelled"):
        counter.cancel(paid.id)
    with pytest.raises(UnknownPayment):
        counter.status("pay_nope")
    with pytest.raises(UnknownPayment):
        counter.confirm("ZZZZZZ")


def test_codes_are_unique_among_waiting_payments() -> None:
    counter = CounterProvider(Clock(), code_source=iter(codes("AAAAAA", "AAAAAA")).__next__)
    a = counter.begin(CART)
    b = counter.begin(Checkout(4, 18, "c" * 32, 100))
    assert a.code == "AAAAAA" and b.code == "C00001"
    stuck = CounterProvider(Clock(), code_source=lambda: "AAAAAA")
    stuck.begin(CART)
    with pytest.raises(PaymentError, match="no free checkout code"):
        stuck.begin(Checkout(4, 18, "c" * 32, 100))


def test_the_test_provider_approves_or_declines_as_told() -> None:
    test = TestProvider(Clock())
    paid = test.begin(CART)
    assert paid.status == PAID and paid.code is None
    assert test.begin(CART) == paid and test.begun == 1  # retried: never paid twice
    test.outcome = "decline"
    declined = test.begin(Checkout(4, 18, "c" * 32, 100))
    assert declined.status == DECLINED
    test.outcome = "approve"
    retry = test.begin(Checkout(4, 18, "c" * 32, 100))  # after a decline: a new try
    assert retry.status == PAID and retry.id != declined.id and test.begun == 3
    test.outcome = "pending"
    waiting = test.begin(Checkout(5, 19, "d" * 32, 100))
    assert waiting.status == PENDING
    assert test.approve(waiting.id).status == PAID
    assert test.approve(waiting.id).status == PAID  # twice: the same
    with pytest.raises(PaymentError, match="already paid"):
        test.decline(waiting.id)
    other = test.begin(Checkout(6, 20, "e" * 32, 100))
    assert test.decline(other.id).status == DECLINED
    test.outcome = "maybe"
    with pytest.raises(ValueError, match="outcome"):
        test.begin(Checkout(7, 21, "f" * 32, 100))


def test_an_empty_cart_is_not_a_checkout() -> None:
    with pytest.raises(ValueError, match="more than 0"):
        Checkout(3, 17, "a" * 32, 0)


def test_memory_is_bounded_and_keeps_what_is_pending() -> None:
    test = TestProvider(Clock(), max_kept=10)
    waiting = []
    test.outcome = "pending"
    for s in range(3):
        waiting.append(test.begin(Checkout(1, s, "a" * 32, 100)))
    test.outcome = "approve"
    for s in range(3, 200):
        test.begin(Checkout(1, s, "a" * 32, 100))
    assert len(test._payments) == 10 and len(test._by_key) == 10
    for w in waiting:
        assert test.status(w.id).status == PENDING


def test_the_registry_picks_by_name() -> None:
    clock = Clock()
    assert isinstance(payments.from_env({}, clock), CounterProvider)
    assert isinstance(payments.from_env({"PAYMENT_PROVIDER": "test"}, clock), TestProvider)
    assert isinstance(payments.from_env({"PAYMENT_PROVIDER": " Counter "}, clock),
                      CounterProvider)
    with pytest.raises(ValueError, match="PAYMENT_PROVIDER: must be one of counter, test"):
        payments.from_env({"PAYMENT_PROVIDER": "card"}, clock)


def test_a_card_provider_plugs_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(payments, "_REGISTRY", dict(payments._REGISTRY))

    class Card(payments.MemoryProvider):
        name = "card"

        def _opened(self, pay: payments.Payment) -> payments.Payment:
            from dataclasses import replace
            return replace(pay, redirect_url="https://pay.example/" + pay.checkout.key)

    payments.register("card", Card)
    card: PaymentProvider = payments.from_env({"PAYMENT_PROVIDER": "card"}, Clock())
    pay = card.begin(CART)
    assert pay.redirect_url == "https://pay.example/basket-3-session-17"
    assert card.begin(CART) == pay
    assert "card" in payments.names()
    with pytest.raises(ValueError):
        payments.register("Bad Name", Card)


def test_the_counters_codes_are_bounded_too() -> None:
    counter = CounterProvider(Clock(), max_kept=5)
    for s in range(50):
        pay = counter.begin(Checkout(1, s, "a" * 32, 100))
        counter.confirm(pay.code or "")
    assert len(counter._payments) == 5 and len(counter._by_code) == 5
    assert counter.confirm(pay.code or "") == counter.status(pay.id)
