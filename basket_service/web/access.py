"""Who may use the dashboard: the bind address and token (access_from_env), and Guard, the ASGI
middleware in front of everything that checks the token, the Host header and the Origin."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from basket_service.config import ConfigError

TOKEN_ENV = "DASHBOARD_TOKEN"
# The release files the baskets fetch (docs/ota.md): public, read-only, no token and no Host
# rule (a basket's HTTP/1.0 GET may carry no Host header); routes.add_releases serves them.
PUBLIC_PREFIX = "/releases/"
# The shopper's pages and their API (docs/shopper.md): no dashboard token; a phone proves
# itself with the token pairing gave it (shop_routes). Host and Origin rules still apply.
SHOP_PREFIX = "/shop/"
COOKIE = "basket_dashboard"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Access:
    host: str
    port: int
    token: str | None = None

    @property
    def url(self) -> str:
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "http://%s:%d/" % (host, self.port)


def access_from_env(host: str, port: int, env: Mapping[str, str] | None = None) -> Access:
    """The bind address and token. Loopback needs no token (one set is still required);
    any other address refuses to start without DASHBOARD_TOKEN (ConfigError, exit 2)."""
    env = os.environ if env is None else env
    token = env.get(TOKEN_ENV) or None
    if token is not None and (len(token) < 16 or not token.isascii() or not token.isprintable()
                              or " " in token):
        raise ConfigError("%s must be at least 16 printable ASCII characters without spaces"
                          % TOKEN_ENV)
    if not is_loopback(host) and token is None:
        raise ConfigError("the dashboard binds to %s, which is not loopback: set %s (at least "
                          "16 characters) so only staff can use it, or bind to 127.0.0.1"
                          % (host, TOKEN_ENV))
    if not 0 <= port <= 65535:
        raise ConfigError("the dashboard port must be 0-65535, got %d" % port)
    return Access(host, port, token)


def _cookie_value(token: str) -> str:
    # The cookie carries a value derived from the token, never the token itself.
    return hmac.new(token.encode(), b"basket-dashboard-cookie", hashlib.sha256).hexdigest()


class Guard:
    """ASGI middleware in front of everything (pages, API, OpenAPI) but the release files
    (GET/HEAD of /releases/..., public) and, for the token only, the shopper's /shop/...:
    - with a token: `Authorization: Bearer <token>`, or the cookie set by opening any page once
      with `?token=<token>`; anything else gets 401;
    - without one (loopback only): the Host header must name loopback, which stops a web page
      elsewhere from reaching the dashboard through DNS rebinding;
    - always: a POST whose Origin is another site is refused (no cross-site form posts)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token
        self.cookie = _cookie_value(token) if token else ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD") and scope["path"].startswith(PUBLIC_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if not self.token and urlsplit("//" + host).hostname not in LOOPBACK_NAMES:
            await PlainTextResponse("unknown Host header", 400)(scope, receive, send)
            return
        origin = headers.get("origin")
        if scope["method"] not in ("GET", "HEAD") and origin and urlsplit(origin).netloc != host:
            await _refuse(scope, 403, "cross-site request refused")(scope, receive, send)
            return
        shopper = scope["path"].startswith(SHOP_PREFIX)
        if self.token and not shopper and not self._allowed(headers):
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            given = query.pop("token", None)
            if given is not None and scope["method"] == "GET" and hmac.compare_digest(
                    given.encode(), self.token.encode()):
                # Swap the token in the address for a cookie, so it leaves the address bar.
                target = same_site_path(scope["path"]) + ("?" + urlencode(query) if query else "")
                resp = RedirectResponse(target, 303)
                resp.set_cookie(COOKIE, self.cookie, httponly=True, samesite="strict")
                await resp(scope, receive, send)
                return
            await _refuse(scope, 401, "a valid dashboard token is required")(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _allowed(self, headers: Headers) -> bool:
        assert self.token is not None
        auth = headers.get("authorization", "")
        if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip().encode(),
                                                              self.token.encode()):
            return True
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and hmac.compare_digest(value.encode(), self.cookie.encode()):
                return True
        return False


def same_site_path(path: str) -> str:
    """Where a token login goes back to: always a path on this site. `//evil.example/`,
    `/\\evil.example` and `%2F%2Fevil` (decoded: `//evil`) would each make the browser leave,
    so leading slashes and backslashes fold into one and the rest is percent-encoded."""
    return "/" + quote(path.lstrip("/\\"), safe="/!$&'()*+,;=:@-._~")


def _refuse(scope: Scope, status: int, detail: str) -> Response:
    if scope["path"].startswith("/api/"):
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"detail": detail}, status, headers=headers)
    hint = " (open the page with ?token=...)" if status == 401 else ""
    return PlainTextResponse(detail + hint, status)
