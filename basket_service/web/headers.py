"""What every dashboard response carries: the security headers (secure_headers, applied by
limits.DashboardApp and limits.raw_response) and the API docs page with a CSP of its own."""

from __future__ import annotations

import base64
import hashlib

from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse

CSP = ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [(b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                    (b"cross-origin-resource-policy", b"same-origin")]
NO_STORE_PATHS = ("/api/", "/openapi.json")
REDIRECTS = (301, 302, 303, 307, 308)


def secure_headers(path: str, status: int,
                   headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Every response: no framing (X-Frame-Options, CSP frame-ancestors), scripts and styles
    only from the dashboard itself, no MIME sniffing, no Referer; API answers, errors and
    redirects are never stored. A route's own CSP (the /docs page) is kept."""
    no_store = (path.startswith(NO_STORE_PATHS) or "/api/" in path or status >= 400
                or status in REDIRECTS)
    names = {k.lower() for k, _ in headers}
    out = [(k, v) for k, v in headers if not (no_store and k.lower() == b"cache-control")]
    if b"content-security-policy" not in names:
        out.append((b"content-security-policy", CSP.encode()))
    if no_store or b"cache-control" not in names:
        out.append((b"cache-control", b"no-store" if no_store else b"no-cache"))
    return out + [h for h in SECURITY_HEADERS if h[0] not in names]



def docs_page(openapi_url: str, title: str) -> HTMLResponse:
    """FastAPI's Swagger UI page (scripts from cdn.jsdelivr.net, as FastAPI serves it) with a
    CSP that allows that CDN and exactly its one inline script, by hash."""
    page = get_swagger_ui_html(openapi_url=openapi_url, title=title)
    body = bytes(page.body)
    inline = body.split(b"<script>", 1)[1].split(b"</script>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(inline).digest()).decode()
    cdn = "https://cdn.jsdelivr.net"
    csp = ("default-src 'self'; script-src %s 'sha256-%s'; style-src %s 'unsafe-inline'; "
           "img-src 'self' data: "
           "https://fastapi.tiangolo.com; object-src 'none'; base-uri 'none'; "
           "form-action 'self'; frame-ancestors 'none'" % (cdn, digest, cdn))
    return HTMLResponse(body, headers={"Content-Security-Policy": csp})
