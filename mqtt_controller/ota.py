# Updates over the air, the pure part (no I/O): the signed push, the release manifest, the
# release URLs and the agent's changes of <OTA_DIR>/state.json, so the download (otaget.py) and
# the agent (otarun.py) decide alike and tests need no files; the state's shape and the boot
# decision are the loader's (otaboot.py, small: it loads at every start), re-exported here.
# Every bad input raises OtaError (a ValueError) with a short reason; nothing else escapes.
import json
from binascii import hexlify
from hashlib import sha256

from mqtt_controller.otaboot import (  # noqa: F401 - the state helpers, re-exported
    REASON_MAX,
    STRANDED,
    chars_only,
    clean_state,
    decide,
    hex64,
    new_state,
    record,
    trial_failed,
    valid_version,
)

PUSH_MAX = 1024  # bytes of a push
URL_MAX = 256
LINE_MAX = 256  # a manifest line
FILES_MAX = 64  # file lines of one flavour (a basket keeps only its own)
FILE_SIZE_MAX = 65536
PATH_MAX = 64
HEADER = "smart-basket-release 1"
FLAVOURS = ("py", "mpy")

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_PATH_CHARS = _ALNUM + "_./-"
_HOST_CHARS = _ALNUM + ".-"


class OtaError(ValueError):
    pass


def valid_path(p):
    """A release file's path: relative, plain characters, no empty, `.` or `..` segment."""
    if not isinstance(p, str) or not 0 < len(p) <= PATH_MAX or not chars_only(p, _PATH_CHARS):
        return False
    for seg in p.split("/"):
        if seg in ("", ".", ".."):
            return False
    return True


# -- the signature ----------------------------------------------------------------------------
def hmac_sha256(key, msg):
    """RFC 2104 over SHA-256 (block 64 bytes): MicroPython has no hmac module."""
    if len(key) > 64:
        key = sha256(key).digest()
    key = key + b"\x00" * (64 - len(key))
    inner = sha256(bytes(b ^ 0x36 for b in key))
    inner.update(msg)
    outer = sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def signature(basket_id, version, sha_hex, key):
    """64 lowercase hex: HMAC-SHA256 under the OTA_KEY text (as UTF-8, not hex-decoded) over
    "<id>\\n<version>\\n<sha256>", so a key read out of one basket signs nothing for another."""
    msg = ("%d\n%s\n%s" % (basket_id, version, sha_hex)).encode()
    if isinstance(key, str):
        key = key.encode()
    return hexlify(hmac_sha256(key, msg)).decode()


def _same(a, b):
    """Constant time for equal lengths: how much of a guess matched never shows in the timing."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


def parse_push(payload, basket_id, key):
    """The retained basket/<n>/ota message as {"version", "manifest", "sha256", "sig"}, checked
    and its signature verified; None for an empty payload (no update wanted)."""
    if isinstance(payload, str):
        payload = payload.encode()
    if not payload:
        return None
    if len(payload) > PUSH_MAX:
        raise OtaError("push too big")
    if not key:
        raise OtaError("no OTA_KEY")
    try:
        doc = json.loads(bytes(payload).decode())
    except Exception:  # ValueError on CPython, UnicodeError or others on MicroPython
        raise OtaError("bad JSON")
    if not isinstance(doc, dict):
        raise OtaError("push must be a JSON object")
    version, url, sha, sig = (doc.get(k) for k in ("version", "manifest", "sha256", "sig"))
    if not valid_version(version):
        raise OtaError("bad version")
    if not isinstance(url, str):
        raise OtaError("bad manifest URL")
    split_url(url)
    if not url.endswith("/manifest.txt"):
        raise OtaError("manifest URL must end in /manifest.txt")
    if not hex64(sha):
        raise OtaError("sha256 must be 64 lowercase hex digits")
    if not hex64(sig):
        raise OtaError("sig must be 64 lowercase hex digits")
    if not _same(signature(basket_id, version, sha, key).encode(), sig.encode()):
        raise OtaError("bad signature")
    return {"version": version, "manifest": url, "sha256": sha, "sig": sig}


# -- URLs -------------------------------------------------------------------------------------
def split_url(url):
    """(host, port, path) of an http:// URL. Plain http on purpose: integrity comes from the
    signature and the hashes, never from the transport."""
    if not isinstance(url, str) or len(url) > URL_MAX:
        raise OtaError("bad manifest URL")
    if not url.startswith("http://"):
        raise OtaError("manifest URL must be http://")
    rest = url[7:]
    cut = rest.find("/")
    hostport, path = (rest, "/") if cut < 0 else (rest[:cut], rest[cut:])
    host, port = hostport, 80
    if ":" in hostport:
        host, digits = hostport.split(":", 1)
        if not 0 < len(digits) <= 5 or not chars_only(digits, "0123456789"):
            raise OtaError("bad port in URL")
        port = int(digits)
        if not 0 < port < 65536:
            raise OtaError("bad port in URL")
    if not host or not chars_only(host, _HOST_CHARS):
        raise OtaError("bad host in URL")
    for c in path:  # it goes into a request line: no spaces, no control characters
        if not " " < c <= "~":
            raise OtaError("bad path in URL")
    return host, port, path


def file_url(manifest_url, flavour, path):
    """The URL of a release file: manifest.txt's URL with `manifest.txt` -> flavour/path."""
    return manifest_url[:-len("manifest.txt")] + flavour + "/" + path


# -- the manifest -----------------------------------------------------------------------------
class Manifest:
    """Fed line by line (str, no newline) as the download streams it; keeps the file lines of
    one flavour as `files`: [(path, size, sha_hex)]; `version` from its version line."""

    def __init__(self, flavour):
        if flavour not in FLAVOURS:
            raise OtaError("unknown flavour %r" % (flavour,))
        self.flavour = flavour
        self.version = None
        self.files = []
        self._header = False
        self._count = 0  # file lines of every flavour (at most 2 * FILES_MAX)

    def line(self, text):
        if not isinstance(text, str) or len(text) > LINE_MAX:
            raise OtaError("manifest line too long")
        if not self._header:
            if text != HEADER:
                raise OtaError("not a release manifest (first line %r)" % text[:40])
            self._header = True
            return
        if not text:
            return  # a blank line carries nothing (the file's hash covers it anyway)
        words = text.split(" ")
        if words[0] == "version" and len(words) == 2:
            if self.version is not None or not valid_version(words[1]):
                raise OtaError("bad version line")
            self.version = words[1]
        elif words[0] == "file" and len(words) == 5:
            self._file(words[1], words[2], words[3], words[4])
        else:
            raise OtaError("bad manifest line %r" % text[:40])

    def _file(self, flavour, size, sha, path):
        self._count += 1
        if self._count > 2 * FILES_MAX:
            raise OtaError("more than %d file lines" % (2 * FILES_MAX))
        if flavour not in FLAVOURS:
            raise OtaError("unknown flavour %r" % flavour[:8])
        if not 0 < len(size) <= 6 or not chars_only(size, "0123456789") \
                or int(size) > FILE_SIZE_MAX:
            raise OtaError("bad size for %s" % path[:PATH_MAX])
        if not hex64(sha):
            raise OtaError("bad sha256 for %s" % path[:PATH_MAX])
        if not valid_path(path):
            raise OtaError("bad path %r" % path[:PATH_MAX])
        if flavour != self.flavour:
            return
        if len(self.files) >= FILES_MAX:
            raise OtaError("more than %d %s files" % (FILES_MAX, flavour))
        for f in self.files:
            if f[0] == path:
                raise OtaError("%s listed twice" % path)
        self.files.append((path, int(size), sha))

    def done(self, version=None):
        """After the last line: a header and a version line came (the version `version` when
        given), and the flavour's files include the package."""
        if not self._header:
            raise OtaError("empty manifest")
        if self.version is None:
            raise OtaError("no version line")
        if version is not None and self.version != version:
            raise OtaError("manifest is for %s, not %s" % (self.version, version))
        init = "mqtt_controller/__init__." + self.flavour
        for f in self.files:
            if f[0] == init:
                return self
        raise OtaError("no %s in the %s files" % (init, self.flavour))


# -- state.json: what the loader needs lives in otaboot.py (small: it loads at every start);
# the agent's changes are here --------------------------------------------------------------
def staged(state, version):
    """A verified version under v/<version>: the next start runs it on trial."""
    if not valid_version(version):
        raise OtaError("bad version")
    s = dict(state)
    s["trial"] = version
    s["tries"] = 0
    return s


def trial_ok(state):
    """The trial connected and subscribed: it becomes current, the old current previous.
    (state, versions to keep); every other folder under v/ may go."""
    s = dict(state)
    if s.get("trial") is not None:
        s["previous"] = s.get("current")
        s["current"] = s["trial"]
        s["last"] = record("ok", s["trial"], None)
        s["trial"] = None
        s["tries"] = 0
    return s, [v for v in (s.get("current"), s.get("previous")) if v is not None]


def refused(state, version, sha, reason):
    """A push that failed verification: remembered by its hash, so the retained message is not
    fetched again at every reconnect."""
    s = dict(state)
    s["refused"] = sha if hex64(sha) else None
    s["last"] = record("failed", version if valid_version(version) else None, reason)
    return s
