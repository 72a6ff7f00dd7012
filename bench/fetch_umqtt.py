"""Fetches the reference client umqtt.simple from its source distribution on PyPI (pinned
version and SHA-256) and extracts umqtt/simple.py into bench/.cache/umqtt/ (gitignored).

pip cannot download this sdist (it has no setup.py, so pip fails while preparing metadata),
so this reads PyPI's simple index, as pip does, and checks the pinned hash. Run by
`make bench-deps`; the benchmarks never download anything."""

from __future__ import annotations

import hashlib
import io
import re
import sys
import tarfile
import urllib.request
from pathlib import Path

PACKAGE = "micropython-umqtt.simple"
VERSION = "1.3.4"
SHA256 = "b6a2520239e3992c63a7de9370ee9b3d9d27819a90359c521f1c0f7ccab8d12f"
INDEX = "https://pypi.org/simple/micropython-umqtt-simple/"
DEST = Path(__file__).resolve().parent / ".cache" / "umqtt"


def main() -> int:
    target = DEST / "umqtt" / "simple.py"
    stamp = DEST / "VERSION"
    if target.exists() and stamp.exists() and stamp.read_text().strip() == VERSION:
        print("umqtt.simple %s already in %s" % (VERSION, DEST))
        return 0
    name = "%s-%s.tar.gz" % (PACKAGE, VERSION)
    html = urllib.request.urlopen(INDEX, timeout=60).read().decode()
    urls = [u for u in re.findall(r'href="([^"]+)"', html) if u.split("#")[0].endswith(name)]
    if not urls:
        print("fetch_umqtt: %s not on the index" % name, file=sys.stderr)
        return 1
    data = urllib.request.urlopen(urls[0].split("#")[0], timeout=60).read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        print("fetch_umqtt: %s has SHA-256 %s, expected %s" % (name, digest, SHA256),
              file=sys.stderr)
        return 1
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.extractfile("%s-%s/umqtt/simple.py" % (PACKAGE, VERSION))
        assert member is not None
        source = member.read()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source)
    (target.parent / "__init__.py").write_text("")
    stamp.write_text(VERSION + "\n")
    print("umqtt.simple %s (sha256 %s...) -> %s" % (VERSION, SHA256[:12], target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
