"""Pairing a shopper's phone with a basket (issue 16): a short PIN shown on the idle basket's
display proves the phone is at the basket; pairing gives the phone a token that alone may watch,
check out or end that basket's session. Pure: no I/O; the clock (`now`, seconds since the
epoch) and the randomness (Sources) are passed in.

The rules, per basket:

- While idle (not paired) the basket has one PIN (6 digits from `secrets`). `pair()` with it
  returns a new phone token (`secrets.token_urlsafe(32)`) and binds the basket to it; the PIN is
  consumed at once (a paired basket has no PIN). Only a hash of the token (SHA-256) is kept.
- A paired basket refuses any other pairing (`already_paired`, whatever the PIN, not counted as
  a wrong try), and `authorize()` refuses every phone without its token (`not_paired`).
- `session_ended()` unbinds the phone and draws a new PIN, never equal to the one before, so
  the PIN a shopper saw never opens the basket again.
- Wrong PINs (`wrong_pin`; a PIN that is not 6 digits counts too): `max_failures` (5) of them
  within `window_s` (10 min) lock the basket for `lock_s` (5 min): every `pair()` until then
  answers `locked` with the time it ends, even with the right PIN, and the lock draws a new PIN,
  so what was guessed before counts for nothing after it.
- Comparisons run in constant time (hmac.compare_digest) on the PIN and on the token's hash.
- Memory: one PairState per basket, of fixed size (at most `max_failures` failure times).

Two ways to use it. The pure functions (`fresh`, `pair`, `authorize`, `session_ended`, `shown`)
take a PairState and return a new one, so a database-backed store reads the basket's row
(PairState.from_dict), calls one of them inside its transaction, and writes the row back
(to_dict); that is what the wiring should do with several service processes. `Pairing` is the
same held in memory (one process, and the tests): `pair(basket, pin, now)` and so on.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

PIN_DIGITS = 6
TOKEN_BYTES = 32
MAX_TOKEN_CHARS = 128  # token_urlsafe(32) is 43 characters; longer input is refused unhashed
_PIN_RE = re.compile(r"[0-9]{%d}\Z" % PIN_DIGITS)
_HASH_RE = re.compile(r"[0-9a-f]{64}\Z")

WRONG_PIN = "wrong_pin"
LOCKED = "locked"
ALREADY_PAIRED = "already_paired"
NOT_PAIRED = "not_paired"


@dataclass(frozen=True)
class Policy:
    """The lock-out: `max_failures` wrong PINs within `window_s` seconds lock for `lock_s`."""

    max_failures: int = 5
    window_s: float = 600.0
    lock_s: float = 300.0

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.window_s <= 0 or self.lock_s <= 0:
            raise ValueError("pairing policy: max_failures >= 1, window_s and lock_s > 0")


def _random_pin() -> str:
    return "%0*d" % (PIN_DIGITS, secrets.randbelow(10 ** PIN_DIGITS))


def _random_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


@dataclass(frozen=True)
class Sources:
    """Where PINs and tokens come from; tests pass fixed ones."""

    pin: Callable[[], str] = _random_pin
    token: Callable[[], str] = _random_token


def token_hash(token: str) -> str:
    """What is stored of a phone token: SHA-256, hex (the token is 256 random bits, so a plain
    hash is enough; a leaked row does not let anyone act as the phone)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Refused(Exception):
    """A pairing operation was refused. `reason` is one of wrong_pin, locked, already_paired,
    not_paired; `doc()` is the answer for the phone (JSON-ready). `state`: the basket's new
    state when the refusal changed it (a wrong PIN counted, a lock begun), which the caller
    must store as it would a success; None when nothing changed."""

    reason = ""

    def __init__(self, basket: int, message: str) -> None:
        super().__init__(message)
        self.basket = basket
        self.state: PairState | None = None

    def doc(self) -> dict[str, Any]:
        return {"refused": self.reason, "basket": self.basket, "detail": str(self)}


class WrongPin(Refused):
    reason = WRONG_PIN

    def __init__(self, basket: int, tries_left: int) -> None:
        super().__init__(basket, "basket %d: wrong PIN (%d more tr%s before the basket locks)"
                         % (basket, tries_left, "y" if tries_left == 1 else "ies"))
        self.tries_left = tries_left

    def doc(self) -> dict[str, Any]:
        return super().doc() | {"tries_left": self.tries_left}


class Locked(Refused):
    reason = LOCKED

    def __init__(self, basket: int, until: float) -> None:
        super().__init__(basket, "basket %d: too many wrong PINs; locked until %s"
                         % (basket, _utc(until)))
        self.until = until

    def doc(self) -> dict[str, Any]:
        return super().doc() | {"until": _utc(self.until)}


class AlreadyPaired(Refused):
    reason = ALREADY_PAIRED

    def __init__(self, basket: int) -> None:
        super().__init__(basket, "basket %d is already paired with another phone" % basket)


class NotPaired(Refused):
    reason = NOT_PAIRED

    def __init__(self, basket: int) -> None:
        super().__init__(basket, "basket %d is not paired with this phone" % basket)


@dataclass(frozen=True)
class PairState:
    """One basket's pairing, everything there is to persist. `pin` is "" while paired;
    `token_hash` is None while idle; `failures` are the times of the wrong PINs still inside
    the window (oldest first, at most Policy.max_failures); `locked_until` None or a time;
    `last_pin` the PIN used or replaced last ("" at first), which the next PIN never equals."""

    basket: int
    pin: str
    token_hash: str | None = None
    paired_at: float | None = None
    failures: tuple[float, ...] = field(default=())
    locked_until: float | None = None
    last_pin: str = ""

    @property
    def paired(self) -> bool:
        return self.token_hash is not None

    def to_dict(self) -> dict[str, Any]:
        return {"basket": self.basket, "pin": self.pin, "token_hash": self.token_hash,
                "paired_at": self.paired_at, "failures": list(self.failures),
                "locked_until": self.locked_until, "last_pin": self.last_pin}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> PairState:
        """The inverse of to_dict; ValueError naming the field when a stored row is not one."""
        def num(key: str) -> float | None:
            v = doc.get(key)
            if v is None:
                return None
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError("pairing state: %s is not a number" % key)
            return float(v)

        basket = doc.get("basket")
        if isinstance(basket, bool) or not isinstance(basket, int) or basket < 1:
            raise ValueError("pairing state: basket is not a positive integer")
        pin = doc.get("pin")
        th = doc.get("token_hash")
        if th is not None and not (isinstance(th, str) and _HASH_RE.match(th)):
            raise ValueError("pairing state: token_hash is not a SHA-256 hex digest")
        if not isinstance(pin, str) or not (_PIN_RE.match(pin) or (pin == "" and th)):
            raise ValueError("pairing state: pin is not %d digits (or empty while paired)"
                             % PIN_DIGITS)
        last = doc.get("last_pin", "")
        if not isinstance(last, str) or not (last == "" or _PIN_RE.match(last)):
            raise ValueError("pairing state: last_pin is not %d digits or empty" % PIN_DIGITS)
        failures = doc.get("failures", [])
        if not isinstance(failures, (list, tuple)) or not all(
                isinstance(f, (int, float)) and not isinstance(f, bool) for f in failures):
            raise ValueError("pairing state: failures is not a list of times")
        return cls(basket, pin, th, num("paired_at"), tuple(float(f) for f in failures),
                   num("locked_until"), last)


def _new_pin(sources: Sources, *old: str) -> str:
    for _ in range(100):
        pin = sources.pin()
        if not _PIN_RE.match(pin):
            raise ValueError("pairing: the PIN source gave %r, not %d digits" % (pin, PIN_DIGITS))
        if pin not in old:
            return pin
    raise ValueError("pairing: the PIN source keeps giving the old PIN")


def fresh(basket: int, sources: Sources = Sources()) -> PairState:
    """A basket never seen before: idle, with a new PIN."""
    if isinstance(basket, bool) or not isinstance(basket, int) or basket < 1:
        raise ValueError("pairing: basket must be a positive integer, got %r" % (basket,))
    return PairState(basket, _new_pin(sources))


def _settled(state: PairState, now: float, policy: Policy) -> PairState:
    """The state with an ended lock and failures that left the window dropped."""
    locked = state.locked_until if state.locked_until is not None and now < state.locked_until \
        else None
    failures = tuple(f for f in state.failures if now - f < policy.window_s)
    if locked == state.locked_until and failures == state.failures:
        return state
    return replace(state, locked_until=locked, failures=failures)


def pair(state: PairState, pin: object, now: float, policy: Policy = Policy(),
         sources: Sources = Sources()) -> tuple[PairState, str]:
    """Pairs a phone: (the new state, the phone's token). Refused: AlreadyPaired, Locked, or
    WrongPin; a wrong PIN or the lock it begins carries the new state as `.state`."""
    state = _settled(state, now, policy)
    if state.paired:
        raise AlreadyPaired(state.basket)
    if state.locked_until is not None:
        raise Locked(state.basket, state.locked_until)
    # compare_digest takes the same time wherever equal-length inputs differ (only the
    # length, which is public, can end it early).
    given = pin.encode() if isinstance(pin, str) else b""
    if hmac.compare_digest(given, state.pin.encode()):
        token = sources.token()
        return replace(state, pin="", last_pin=state.pin, token_hash=token_hash(token),
                       paired_at=now, failures=()), token
    failures = (state.failures + (now,))[-policy.max_failures:]
    if len(failures) >= policy.max_failures:
        until = now + policy.lock_s
        e: Refused = Locked(state.basket, until)
        e.state = replace(state, pin=_new_pin(sources, state.pin, state.last_pin),
                          last_pin=state.pin, failures=(), locked_until=until)
    else:
        e = WrongPin(state.basket, policy.max_failures - len(failures))
        e.state = replace(state, failures=failures)
    raise e


def authorize(state: PairState, token: object) -> None:
    """Lets the phone holding the basket's token watch, check out or end its session; NotPaired
    for any other token, none, or a basket that is not paired."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        given = "\0" * 64  # hashed nothing: still one comparison, as for a real token
    else:
        given = token_hash(token)
    ok = hmac.compare_digest(given.encode(), (state.token_hash or "x" * 64).encode())
    if not ok or state.token_hash is None:
        raise NotPaired(state.basket)


def session_ended(state: PairState, sources: Sources = Sources()) -> PairState:
    """The basket's session is over (checkout, cancel, abandoned, ended by staff): the phone is
    unbound and a new PIN, never the one before, is drawn. A lock in force stays."""
    pin = _new_pin(sources, state.pin, state.last_pin)
    return replace(state, pin=pin, last_pin=state.pin or state.last_pin, token_hash=None,
                   paired_at=None)


def shown(state: PairState, now: float, policy: Policy = Policy()) -> dict[str, Any]:
    """What the basket's display should show about pairing: {"pin": "123456"} while it can be
    paired, {"locked_until": "...Z"} while locked, {"paired": True} while paired."""
    state = _settled(state, now, policy)
    if state.paired:
        return {"paired": True}
    if state.locked_until is not None:
        return {"locked_until": _utc(state.locked_until)}
    return {"pin": state.pin}


class Pairing:
    """The pairing of every basket, held in memory (one process; the tests). Each method is
    the pure function of the same name on that basket's PairState; refusals raise Refused."""

    def __init__(self, policy: Policy = Policy(), sources: Sources = Sources()) -> None:
        self.policy = policy
        self.sources = sources
        self._states: dict[int, PairState] = {}

    def state(self, basket: int) -> PairState:
        """The basket's state (a fresh one, with a new PIN, the first time it is asked for)."""
        st = self._states.get(basket)
        if st is None:
            st = self._states[basket] = fresh(basket, self.sources)
        return st

    def load(self, state: PairState) -> None:
        """Puts a stored state in place (e.g. PairState.from_dict of a database row)."""
        self._states[state.basket] = state

    def shown(self, basket: int, now: float) -> dict[str, Any]:
        return shown(self.state(basket), now, self.policy)

    def pair(self, basket: int, pin: object, now: float) -> str:
        try:
            st, token = pair(self.state(basket), pin, now, self.policy, self.sources)
        except Refused as e:
            if e.state is not None:
                self._states[basket] = e.state
            raise
        self._states[basket] = st
        return token

    def authorize(self, basket: int, token: object) -> None:
        authorize(self.state(basket), token)

    def end(self, basket: int, token: object) -> str:
        """The paired phone ends its session (the session itself is the store's): NotPaired
        unless it holds the token; else as session_ended, returning the new PIN."""
        self.authorize(basket, token)
        return self.session_ended(basket)

    def session_ended(self, basket: int) -> str:
        """Any end of the basket's session: the new PIN to send to its display."""
        st = self._states[basket] = session_ended(self.state(basket), self.sources)
        return st.pin

    def forget(self, basket: int) -> None:
        """A basket taken out of the store."""
        self._states.pop(basket, None)
