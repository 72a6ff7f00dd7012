"""Pairing a phone with a basket (pairing.py), pure: the PIN, the token, a second phone, the
PIN's change after every session, the lock-out and its window, the stored state."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator

import pytest

from basket_service import pairing
from basket_service.pairing import (
    AlreadyPaired,
    Locked,
    NotPaired,
    Pairing,
    PairState,
    Policy,
    Refused,
    Sources,
    WrongPin,
)

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def seq(*values: str) -> Iterator[str]:
    yield from values
    n = 0
    while True:
        n += 1
        yield "9%05d" % n


def fixed(*pins: str) -> Sources:
    pin_it = seq(*pins)
    tokens = ("tok-%d-" % n + "x" * 30 for n in range(1, 10**6))
    return Sources(pin=lambda: next(pin_it), token=lambda: next(tokens))


def test_pair_with_the_pin_gives_a_token_and_binds_the_basket() -> None:
    p = Pairing(sources=fixed("123456"))
    assert p.shown(3, T0) == {"pin": "123456"}
    token = p.pair(3, "123456", T0)
    assert token == "tok-1-" + "x" * 30
    p.authorize(3, token)
    assert p.shown(3, T0) == {"paired": True}
    st = p.state(3)
    assert st.pin == "" and st.paired_at == T0
    assert st.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in json.dumps(st.to_dict())  # only its hash is kept


def test_default_sources_are_secrets() -> None:
    p = Pairing()
    pin = p.state(1).pin
    assert len(pin) == 6 and pin.isdigit()
    token = p.pair(1, pin, T0)
    assert len(token) == 43  # token_urlsafe(32)
    assert len(secrets.token_urlsafe(32)) == len(token)


def test_a_second_phone_cannot_pair_watch_or_end() -> None:
    p = Pairing(sources=fixed("123456"))
    token = p.pair(3, "123456", T0)
    with pytest.raises(AlreadyPaired) as e:
        p.pair(3, "123456", T0 + 1)  # the old PIN, the right one before
    assert e.value.reason == "already_paired" and e.value.doc()["basket"] == 3
    for other in ("tok-2-" + "x" * 30, "", None, 42, token[:-1], token + "x", "y" * 10_000):
        with pytest.raises(NotPaired) as n:
            p.authorize(3, other)
        assert n.value.reason == "not_paired"
        with pytest.raises(NotPaired):
            p.end(3, other)
    assert p.state(3).paired  # still the first phone's
    # already_paired does not count as wrong tries: many of them lock nothing.
    for _ in range(20):
        with pytest.raises(AlreadyPaired):
            p.pair(3, "000000", T0 + 2)
    assert p.state(3).failures == ()


def test_an_idle_basket_authorizes_no_one() -> None:
    p = Pairing(sources=fixed("123456"))
    with pytest.raises(NotPaired):
        p.authorize(4, "tok-1-" + "x" * 30)
    with pytest.raises(NotPaired):
        p.authorize(4, None)


def test_the_pin_changes_after_every_session_and_never_opens_again() -> None:
    p = Pairing(sources=fixed("111111", "111111", "222222", "333333"))
    token = p.pair(1, "111111", T0)
    new = p.end(1, token)  # the source offers 111111 again: refused, 222222 drawn
    assert new == "222222" and p.shown(1, T0) == {"pin": "222222"}
    with pytest.raises(NotPaired):
        p.authorize(1, token)  # the old phone is unbound
    with pytest.raises(WrongPin):
        p.pair(1, "111111", T0 + 1)
    token2 = p.pair(1, "222222", T0 + 2)
    assert p.session_ended(1) == "333333"  # ended by staff or the idle timeout
    with pytest.raises(NotPaired):
        p.authorize(1, token2)


def test_wrong_pins_count_down_then_lock_with_the_time_it_ends() -> None:
    p = Pairing(sources=fixed("123456", "654321"))
    for n, guess in enumerate(["000000", "12345", "1234567", None]):
        with pytest.raises(WrongPin) as e:
            p.pair(2, guess, T0 + n)
        assert e.value.tries_left == 4 - n
        assert e.value.doc()["refused"] == "wrong_pin"
    with pytest.raises(Locked) as lk:
        p.pair(2, "999999", T0 + 10)
    assert lk.value.until == T0 + 10 + 300
    assert lk.value.doc()["until"] == "2027-01-15T08:05:10Z"
    assert "locked until 2027-01-15T08:05:10Z" in str(lk.value)
    assert p.shown(2, T0 + 11) == {"locked_until": "2027-01-15T08:05:10Z"}
    # While locked even the right PIN (the new one; the old one is gone) is refused.
    for pin in ("123456", "654321"):
        with pytest.raises(Locked):
            p.pair(2, pin, T0 + 309)
    assert p.state(2).pin == "654321"
    # The lock ends: the new PIN works, the old does not.
    with pytest.raises(WrongPin) as e:
        p.pair(2, "123456", T0 + 310)
    assert e.value.tries_left == 4
    assert p.pair(2, "654321", T0 + 311)


def test_the_lock_is_per_basket() -> None:
    p = Pairing(sources=fixed("123456", "222222", "333333"))
    for n in range(5):
        with pytest.raises((WrongPin, Locked)):
            p.pair(1, "000000", T0 + n)
    with pytest.raises(Locked):
        p.pair(1, "000000", T0 + 5)
    assert p.pair(2, p.state(2).pin, T0 + 6)  # basket 2 is not locked


def test_wrong_tries_outside_the_window_are_forgotten() -> None:
    pol = Policy(max_failures=3, window_s=60, lock_s=30)
    p = Pairing(pol, fixed("123456"))
    for t in (0, 30, 61, 92):  # never three within 60 s
        with pytest.raises(WrongPin):
            p.pair(1, "000000", T0 + t)
    assert len(p.state(1).failures) <= 3
    with pytest.raises(Locked) as lk:
        p.pair(1, "000000", T0 + 100)  # 61, 92, 100
    assert lk.value.until == T0 + 130


def test_memory_is_bounded_per_basket() -> None:
    pol = Policy(max_failures=5, window_s=10**9, lock_s=1)
    p = Pairing(pol, fixed())
    t = T0
    for _ in range(1000):
        t += 2  # past any lock
        try:
            p.pair(1, "abcdef", t)
        except Refused:
            pass
        assert len(p.state(1).failures) < 5
    assert list(p._states) == [1]


def test_the_pure_functions_and_the_stored_state_round_trip() -> None:
    src = fixed("123456", "222222")
    st = pairing.fresh(7, src)
    with pytest.raises(WrongPin) as e:
        pairing.pair(st, "000000", T0)
    assert e.value.state is not None and e.value.state.failures == (T0,)
    st = PairState.from_dict(json.loads(json.dumps(e.value.state.to_dict())))
    assert st == e.value.state
    st2, token = pairing.pair(st, "123456", T0 + 1)
    assert PairState.from_dict(st2.to_dict()) == st2
    pairing.authorize(st2, token)
    with pytest.raises(AlreadyPaired) as ap:
        pairing.pair(st2, "123456", T0 + 2)
    assert ap.value.state is None  # nothing changed: nothing to store
    st3 = pairing.session_ended(st2, src)
    assert st3.pin == "222222" and not st3.paired
    p = Pairing(sources=src)
    p.load(st3)
    assert p.shown(7, T0) == {"pin": "222222"}


@pytest.mark.parametrize("doc, field", [
    ({"basket": 0, "pin": "123456"}, "basket"),
    ({"basket": True, "pin": "123456"}, "basket"),
    ({"basket": 1, "pin": "12345"}, "pin"),
    ({"basket": 1, "pin": ""}, "pin"),  # empty only while paired
    ({"basket": 1, "pin": "123456", "token_hash": "abc"}, "token_hash"),
    ({"basket": 1, "pin": "123456", "failures": ["x"]}, "failures"),
    ({"basket": 1, "pin": "123456", "locked_until": "soon"}, "locked_until"),
])
def test_a_bad_stored_state_is_refused_naming_the_field(doc: dict[str, object],
                                                        field: str) -> None:
    with pytest.raises(ValueError, match=field):
        PairState.from_dict(doc)


def test_bad_sources_and_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="not 6 digits"):
        pairing.fresh(1, Sources(pin=lambda: "12ab56"))
    with pytest.raises(ValueError, match="positive integer"):
        pairing.fresh(0)
    with pytest.raises(ValueError):
        Policy(max_failures=0)
    st = pairing.fresh(1, Sources(pin=lambda: "123456"))
    with pytest.raises(ValueError, match="keeps giving the old PIN"):
        pairing.session_ended(st, Sources(pin=lambda: "123456"))


def test_comparisons_are_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = pairing.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(pairing.hmac, "compare_digest", spy)
    p = Pairing(sources=fixed("123456"))
    with pytest.raises(WrongPin):
        p.pair(1, "123450", T0)
    token = p.pair(1, "123456", T0)
    p.authorize(1, token)
    assert [len(a) for a, _ in calls] == [6, 6, 64]
