"""Payment providers for the shopper's checkout (issue 16): the interface, the `counter`
provider (the default: the phone shows a short checkout code, staff confirm it on the
dashboard), the `test` provider (approves or declines as a test tells it) and the registry that
picks one by name (`PAYMENT_PROVIDER=counter|test`). No I/O; the clock is passed in.

The interface (PaymentProvider):

- `begin(checkout) -> Payment`: asks for the checkout's amount. Idempotent per checkout key
  (basket and session): a retried checkout of the same cart gets the same Payment back, a paid
  one is never begun again (the same paid Payment comes back, whatever the cart), a pending one
  for another cart (it changed before paying) is cancelled and a new one begun, and after a
  decline or a cancel a new one is begun.
- `status(payment_id) -> Payment`: where it stands (pending, paid, declined, cancelled).
- `cancel(payment_id) -> Payment`: gives up a pending payment; a paid one cannot be cancelled
  (PaymentError), a finished one comes back unchanged.
- Every answer is a frozen Payment; a state only ever moves pending -> paid | declined |
  cancelled. Unknown ids: UnknownPayment.

What the caller (the wiring) does with it: begin() when the shopper presses "pay" (an empty
cart is refused before that); when status() says paid, bill the cart the Payment names
(`payment.checkout.digest`) in the checkout transaction, with the payment id on the receipt, so
a second "paid" for the same payment finds the receipt and bills nothing.

Plugging in a real card provider: write a class with the same three verbs and `name` (subclass
MemoryProvider to keep its ledger, or keep the ledger in the provider's own system), and
register it: `register("card", lambda clock: CardProvider(clock, ...))`; then
`PAYMENT_PROVIDER=card` selects it and nothing else changes. Its begin() creates the charge at
the card company with `checkout.key` as the idempotency key (so its own retries never charge
twice), returns a pending Payment whose `redirect_url` is the card company's page for the phone
(the shopper page sends the phone there when it is set, and shows `code` when that is set);
status() reads the charge (or what its webhook stored), cancel() voids it. Its network calls
belong in that class (an adapter at the edge), never here.
"""

from __future__ import annotations

import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

PENDING = "pending"
PAID = "paid"
DECLINED = "declined"
CANCELLED = "cancelled"
STATUSES = (PENDING, PAID, DECLINED, CANCELLED)

# The counter's checkout codes: 6 characters without look-alikes (no 0/O, 1/I/L, 2/Z, 5/S, 8/B).
CODE_ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"
CODE_LENGTH = 6
MAX_KEPT = 10_000  # payments a memory provider remembers; the oldest finished ones go first

Clock = Callable[[], float]


class PaymentError(RuntimeError):
    """A payment operation does not fit the payment's state (e.g. confirming a cancelled one)."""


class UnknownPayment(PaymentError):
    """No such payment id or checkout code."""


@dataclass(frozen=True)
class Checkout:
    """What the shopper is paying for: the basket's open session and the cart priced in it."""

    basket: int
    session: int
    digest: str  # contract.cart_digest of the cart
    total: int  # won, more than 0 (an empty cart is not checked out)

    def __post_init__(self) -> None:
        if self.total <= 0:
            raise ValueError("checkout of basket %d: total must be more than 0, got %d"
                             % (self.basket, self.total))

    @property
    def key(self) -> str:
        """The idempotency key: one payment per session (a retry reuses it)."""
        return "basket-%d-session-%d" % (self.basket, self.session)


@dataclass(frozen=True)
class Payment:
    id: str
    provider: str
    checkout: Checkout
    status: str  # one of STATUSES
    created_at: float
    updated_at: float
    code: str | None = None  # the counter's checkout code, shown on the phone
    redirect_url: str | None = None  # a card provider's page for the phone

    @property
    def finished(self) -> bool:
        return self.status != PENDING

    def doc(self) -> dict[str, object]:
        """The JSON answer for the phone and the dashboard."""
        return {"payment": self.id, "provider": self.provider, "status": self.status,
                "basket": self.checkout.basket, "session": self.checkout.session,
                "total": self.checkout.total, "code": self.code,
                "redirect_url": self.redirect_url}


class PaymentProvider(Protocol):
    """What the checkout needs from a payment provider (see the module's docstring)."""

    name: str

    def begin(self, checkout: Checkout) -> Payment: ...

    def status(self, payment_id: str) -> Payment: ...

    def cancel(self, payment_id: str) -> Payment: ...


class MemoryProvider:
    """The shared part of the providers that keep their ledger in memory: ids, the
    idempotency per checkout key, the pending -> finished moves, the bound on memory.
    Subclasses add how a payment gets decided (`_opened`, and their own verbs)."""

    name = "memory"

    def __init__(self, clock: Clock, max_kept: int = MAX_KEPT) -> None:
        self.clock = clock
        self.max_kept = max_kept
        self._payments: OrderedDict[str, Payment] = OrderedDict()
        self._by_key: dict[str, str] = {}

    def begin(self, checkout: Checkout) -> Payment:
        old_id = self._by_key.get(checkout.key)
        old = self._payments.get(old_id) if old_id else None
        if old is not None:
            if old.status == PAID:
                return old
            if old.status == PENDING:
                if old.checkout == checkout:
                    return old
                self._finish(old, CANCELLED)  # the cart changed before it was paid
        now = self.clock()
        pay = self._opened(Payment("pay_" + secrets.token_urlsafe(12), self.name, checkout,
                                   PENDING, now, now))
        self._payments[pay.id] = pay
        self._by_key[checkout.key] = pay.id
        self._prune()
        return pay

    def status(self, payment_id: str) -> Payment:
        pay = self._payments.get(payment_id)
        if pay is None:
            raise UnknownPayment("no payment %r" % payment_id[:40])
        return pay

    def cancel(self, payment_id: str) -> Payment:
        pay = self.status(payment_id)
        if pay.status == PAID:
            raise PaymentError("payment %s is paid; it cannot be cancelled" % pay.id)
        return self._finish(pay, CANCELLED) if pay.status == PENDING else pay

    def _opened(self, pay: Payment) -> Payment:
        """A new pending payment, as this provider opens it (a code, a decision...)."""
        return pay

    def _finish(self, pay: Payment, status: str) -> Payment:
        if pay.status != PENDING:
            raise PaymentError("payment %s is already %s" % (pay.id, pay.status))
        done = replace(pay, status=status, updated_at=self.clock())
        self._payments[pay.id] = done
        self._closed(done)
        return done

    def _closed(self, pay: Payment) -> None:
        """Hook: a payment just left pending."""

    def _prune(self) -> None:
        while len(self._payments) > self.max_kept:
            victim = next((p for p in self._payments.values() if p.finished), None)
            if victim is None:
                return  # all pending: they are live checkouts, kept
            del self._payments[victim.id]
            if self._by_key.get(victim.checkout.key) == victim.id:
                del self._by_key[victim.checkout.key]


def normal_code(text: str) -> str:
    """A checkout code as staff may type it: case, spaces and dashes do not matter."""
    return re.sub(r"[\s-]", "", text).upper()


class CounterProvider(MemoryProvider):
    """Pay at the counter: begin() gives a short checkout code (6 characters, no look-alikes,
    unique among pending payments) that the phone shows; staff take the money and confirm the
    code on the dashboard (`confirm(code)`). Confirming twice gives the same paid Payment."""

    name = "counter"

    def __init__(self, clock: Clock, max_kept: int = MAX_KEPT,
                 code_source: Callable[[], str] | None = None) -> None:
        super().__init__(clock, max_kept)
        self._code_source = code_source or (
            lambda: "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH)))
        # code -> payment id, for every payment kept: a code is never given twice while its
        # payment is remembered, so a code staff heard always means one amount.
        self._by_code: dict[str, str] = {}

    def _opened(self, pay: Payment) -> Payment:
        for _ in range(100):
            code = normal_code(self._code_source())
            if code and code not in self._by_code:
                self._by_code[code] = pay.id
                return replace(pay, code=code)
        raise PaymentError("no free checkout code (the code source keeps repeating)")

    def _prune(self) -> None:
        super()._prune()
        if len(self._by_code) > len(self._payments):
            self._by_code = {c: i for c, i in self._by_code.items() if i in self._payments}

    def pending(self) -> list[Payment]:
        """What the dashboard lists: the payments waiting for staff, oldest first."""
        return [p for p in self._payments.values() if p.status == PENDING]

    def confirm(self, code: str) -> Payment:
        """Staff took the money for this code: the payment is paid (once; again gives the same
        Payment). UnknownPayment for a code no payment has; PaymentError for the code of a
        cancelled one (e.g. the cart changed: the phone shows a new code)."""
        pid = self._by_code.get(normal_code(code))
        pay = self._payments.get(pid) if pid else None
        if pay is None:
            raise UnknownPayment("no checkout waits for code %r" % code[:20])
        if pay.status == PAID:
            return pay
        if pay.status != PENDING:
            raise PaymentError("checkout code %s was %s; the phone shows its new code"
                               % (pay.code, pay.status))
        return self._finish(pay, PAID)


class TestProvider(MemoryProvider):
    """For tests: `outcome` decides every new payment at once ("approve" -> paid, "decline" ->
    declined) or leaves it pending ("pending"), to be decided by approve(id) / decline(id).
    Set `outcome` between checkouts to change what the next one gets."""

    __test__ = False  # not a pytest test class
    name = "test"
    OUTCOMES = ("approve", "decline", "pending")

    def __init__(self, clock: Clock, max_kept: int = MAX_KEPT, outcome: str = "approve") -> None:
        super().__init__(clock, max_kept)
        self.outcome = outcome
        self.begun = 0  # how many payments were opened: a test's check that a retry opened none

    def _opened(self, pay: Payment) -> Payment:
        if self.outcome not in self.OUTCOMES:
            raise ValueError("test provider: outcome must be one of %s, got %r"
                             % (", ".join(self.OUTCOMES), self.outcome))
        self.begun += 1
        status = {"approve": PAID, "decline": DECLINED}.get(self.outcome, PENDING)
        return replace(pay, status=status)

    def approve(self, payment_id: str) -> Payment:
        pay = self.status(payment_id)
        return pay if pay.status == PAID else self._finish(pay, PAID)

    def decline(self, payment_id: str) -> Payment:
        return self._finish(self.status(payment_id), DECLINED)


Factory = Callable[[Clock], PaymentProvider]
_REGISTRY: dict[str, Factory] = {"counter": CounterProvider, "test": TestProvider}
DEFAULT = "counter"


def register(name: str, factory: Factory) -> None:
    """Adds a provider `PAYMENT_PROVIDER=<name>` selects; `factory(clock)` makes it."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name):
        raise ValueError("payment provider name %r: lower-case letters, digits, _" % name)
    _REGISTRY[name] = factory


def names() -> list[str]:
    return sorted(_REGISTRY)


def provider(name: str, clock: Clock) -> PaymentProvider:
    """The provider registered as `name`; ValueError naming PAYMENT_PROVIDER otherwise."""
    factory = _REGISTRY.get(name.strip().lower())
    if factory is None:
        raise ValueError("PAYMENT_PROVIDER: must be one of %s, got %r"
                         % (", ".join(names()), name[:40]))
    return factory(clock)


def from_env(env: Mapping[str, str], clock: Clock) -> PaymentProvider:
    """The provider PAYMENT_PROVIDER names (default counter); config.py should call this and
    turn the ValueError into its ConfigError (exit 2)."""
    return provider(env.get("PAYMENT_PROVIDER", "") or DEFAULT, clock)
