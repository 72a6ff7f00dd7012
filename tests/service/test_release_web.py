"""The release files over HTTP (docs/ota.md), against the real uvicorn server on a free
loopback port, asked the way a basket asks (HTTP/1.0, no Host header, no token): the manifest
and every file it lists, byte for byte with the right content type; everything else 404 — path
traversal in every spelling, a file on disk that the manifest does not list, a symlink out of
the release, a build in progress, an unknown version; and the dashboard's token still guards
everything else."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from basket_service import config, releases
from basket_service.db import open_db
from basket_service.web.access import Access
from basket_service.web.server import Dashboard

TOKEN = "s3cret-token-for-tests-0123456789"
V = "3.1.4"


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("rel") / "releases"
    releases.build(V, Path(__file__).resolve().parents[2], where)
    return where


@pytest.fixture
def settings(release_dir: Path, tmp_path: Path) -> config.Settings:
    s = config.load({"BASKET_DB": str(tmp_path / "basket.db"), "RELEASE_DIR": str(release_dir)})
    open_db(s).close()  # the schema, for the dashboard's own routes
    return s


@pytest.fixture(params=[None, TOKEN], ids=["loopback", "token"])
def dash(request: pytest.FixtureRequest, settings: config.Settings) -> Iterator[Dashboard]:
    d = Dashboard(settings, Access("127.0.0.1", 0, request.param)).start()
    yield d
    d.stop()


def get(d: Dashboard, target: str, head: str = "", method: str = "GET"
        ) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.0 request as written (no Host header unless in `head`), read to the close."""
    with socket.create_connection(("127.0.0.1", d.access.port), timeout=10) as s:
        s.sendall(("%s %s HTTP/1.0\r\n%s\r\n" % (method, target, head)).encode("latin-1"))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    top, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = top.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
    return int(status_line.split()[1]), headers, body


def listed(release_dir: Path) -> list[tuple[str, int, str, str]]:
    lines = (release_dir / V / "manifest.txt").read_text().splitlines()[2:]
    return [(f, int(size), sha, path) for _, f, size, sha, path in (ln.split() for ln in lines)]


def test_a_basket_fetches_the_manifest_and_every_file(dash, release_dir):
    status, headers, body = get(dash, "/releases/%s/manifest.txt" % V)
    assert status == 200, body
    assert body == (release_dir / V / "manifest.txt").read_bytes()
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["x-content-type-options"] == "nosniff"
    files = listed(release_dir)
    assert {f for f, _, _, _ in files} == {"py", "mpy"}
    for flavour, size, sha, path in files:
        status, headers, body = get(dash, "/releases/%s/%s/%s" % (V, flavour, path))
        assert status == 200, (path, body)
        assert (len(body), hashlib.sha256(body).hexdigest()) == (size, sha), path
        assert int(headers["content-length"]) == size
        want = "application/octet-stream" if path.endswith(".mpy") else \
            "text/plain; charset=utf-8"
        assert headers["content-type"] == want, path
    # HEAD answers without a body; an HTTP/1.1 client with a Host header works the same.
    status, headers, body = get(dash, "/releases/%s/manifest.txt" % V, method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    status, _, _ = get(dash, "/releases/%s/py/main.py" % V, "Host: 192.0.2.7:8080\r\n")
    assert status == 200


def test_the_token_still_guards_the_dashboard(dash):
    status, _, _ = get(dash, "/api/fleet", "Host: 127.0.0.1\r\n")
    assert status == (401 if dash.access.token else 200)
    status, _, _ = get(dash, "/fleet")  # no Host header: refused as ever
    assert status in (400, 401)
    status, _, _ = get(dash, "/releases/%s/manifest.txt" % V, "Host: evil.example\r\n")
    assert status == 200  # public: a Host header of another name changes nothing here
    # Only reads: a POST to the same address is the dashboard's, and it has no such route.
    with socket.create_connection(("127.0.0.1", dash.access.port), timeout=10) as s:
        s.sendall(b"POST /releases/%s/manifest.txt HTTP/1.0\r\nContent-Length: 0\r\n\r\n"
                  % V.encode())
        first = s.recv(100)
    assert first.split()[1] in (b"400", b"401", b"405"), first


TRAVERSALS = [
    "/releases/%s/py/../../../../../../etc/passwd" % V,
    "/releases/%s/py/mqtt_controller/../../manifest.txt" % V,
    "/releases/%s/py/%%2e%%2e/%%2e%%2e/manifest.txt" % V,
    "/releases/%s/py/..%%2f..%%2f..%%2fetc%%2fpasswd" % V,
    "/releases/%s/py//etc/passwd" % V,
    "/releases/%s/py/%%2fetc%%2fpasswd" % V,
    "/releases/%s/py/./boot.py" % V,
    "/releases/%s/py/boot.py%%00.txt" % V,
    "/releases/%s/py/boot.py/" % V,
    "/releases/%s/../../basket.db" % V,
    "/releases/../basket.db",
    "/releases/%2e%2e/basket.db",
    "/releases/..%2f..%2fetc/passwd",
    "/releases/%s/mpy/mqtt_controller/cart.py" % V,  # a py file under mpy: not listed
    "/releases/%s/py/mqtt_controller/cart.mpy" % V,
    "/releases/%s/src/boot.py" % V,
    "/releases/%s/" % V,
    "/releases/%s" % V,
    "/releases/",
    "/releases/%s/manifest.txt/" % V,
    "/releases/%s/MANIFEST.TXT" % V,
    "/releases/9.9.9/manifest.txt",
    "/releases/.build-x/manifest.txt",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_anything_but_a_listed_file_is_404(dash, target):
    status, _, body = get(dash, target)
    assert status in (400, 404), (target, status, body[:200])
    assert b"root:" not in body and b"smart-basket-release" not in body


def test_only_files_of_a_known_complete_release(settings, release_dir, tmp_path):
    d = Dashboard(settings, Access("127.0.0.1", 0)).start()
    rel = release_dir / V
    extra = rel / "py" / "mqtt_controller" / "secret.py"
    outside = tmp_path / "outside.py"
    outside.write_text("SECRET = 1\n")
    boot = rel / "py" / "boot.py"
    saved = boot.read_bytes()
    try:
        # On disk in the release's folder but not in the manifest: not served.
        extra.write_text("x = 1\n")
        assert get(d, "/releases/%s/py/mqtt_controller/secret.py" % V)[0] == 404
        # A listed file replaced by a symlink out of the release: not served.
        boot.unlink()
        os.symlink(outside, boot)
        status, _, body = get(d, "/releases/%s/py/boot.py" % V)
        assert status == 404 and b"SECRET" not in body
        # A build in progress (a hidden folder; versions never start with a dot) and a folder
        # without a manifest: nothing served from either.
        half = release_dir / ".build-4.0-abc"
        (half / "py").mkdir(parents=True)
        (half / "manifest.txt").write_text("smart-basket-release 1\nversion .build-4.0-abc\n")
        (half / "py" / "boot.py").write_text("x\n")
        assert get(d, "/releases/.build-4.0-abc/manifest.txt")[0] == 404
        (release_dir / "4.0" / "py").mkdir(parents=True)
        (release_dir / "4.0" / "py" / "boot.py").write_text("x\n")
        assert get(d, "/releases/4.0/py/boot.py")[0] == 404
        assert releases.available(release_dir) == [V]
    finally:
        extra.unlink(missing_ok=True)
        boot.unlink()
        boot.write_bytes(saved)
        d.stop()
    assert releases.served_file(release_dir, V, "py/boot.py") == boot


def test_served_file_unit(release_dir):
    """The lookup itself (releases.served_file), without HTTP's own normalising."""
    ok = releases.served_file(release_dir, V, "mpy/mqtt_controller/cart.mpy")
    assert ok == release_dir / V / "mpy" / "mqtt_controller" / "cart.mpy"
    assert releases.served_file(release_dir, V, "manifest.txt") == release_dir / V / \
        "manifest.txt"
    for version, rest in [(V, "py/../manifest.txt"), (V, "py/../../" + V + "/py/boot.py"),
                          ("..", V + "/manifest.txt"), (V, "py//boot.py"), (V, "/py/boot.py"),
                          (V, "py/boot.py\x00"), (V, "py"), (V, ""), (V, "py/"),
                          ("", "manifest.txt"), (V + "/..", "manifest.txt"),
                          (V, "mpy/boot.pyc"), (V, "py/" + "a" * 65)]:
        assert releases.served_file(release_dir, version, rest) is None, (version, rest)


def test_a_symlinked_manifest_is_not_served(tmp_path):
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("smart-basket-release 1\nversion 9.0\n")
    (tmp_path / "rel" / "9.0").mkdir(parents=True)
    os.symlink(outside, tmp_path / "rel" / "9.0" / "manifest.txt")
    assert releases.served_file(tmp_path / "rel", "9.0", "manifest.txt") is None
    (tmp_path / "rel" / "9.1").mkdir()
    (tmp_path / "rel" / "9.1" / "manifest.txt").write_text(outside.read_text())
    assert releases.served_file(tmp_path / "rel", "9.1", "manifest.txt") is not None
