# An update's I/O and the agent's rarer steps (otarun.py keeps only what runs every turn): a
# push checked, the download (fetch: the manifest and each file of this basket's flavour over
# plain HTTP/1.0, streamed in 512-byte chunks into <OTA_DIR>/staging and checked against the
# signed manifest hash, the sizes and SHA-256s; only a complete, verified copy is renamed to
# v/<V> and staged in state.json; nothing of the running version is touched), a trial confirmed
# or given up. Imported only for such a step and released after it (code costs heap on a board).
import os
import socket
from binascii import hexlify
from hashlib import sha256

from mqtt_controller import __version__, compat, log, ota, otaboot
from mqtt_controller.ota import OtaError

CHUNK = 512
TIMEOUT_S = 10  # per connect, send and read
MANIFEST_MAX = 16384  # bytes (read line by line, never held whole)
HEAD_LINE_MAX = 256
HEAD_LINES_MAX = 32


# -- the agent's steps (a: otarun.Agent) ---------------------------------------------------------
def check(a, payload, h):
    """A new push (payload None: over the packet limit; h: its SHA-256): refused, ignored,
    or taken for download."""
    try:
        if payload is None:
            raise OtaError("push too big")
        push = ota.parse_push(payload, a.rt.cfg.basket_id, a.key)
    except OtaError as e:
        return _refuse(a, None, str(e))
    v = push["version"]
    if v == __version__ or v == a.dropped:
        log.info("OTA: push of %s ignored: %s", v, "it runs already" if v == __version__
                 else "it was rolled back")
        return a.drop()
    push["hash"] = h
    a.take(push)
    log.info("OTA: %s pushed", v)


def _refuse(a, version, why, h=None):
    """The basket stays on its version; h given: remembered in state.json across restarts."""
    n = a.refused(version, why)
    log.warning("OTA: push%s refused (#%d): %s; staying on %s",
                "" if version is None else " of " + version, n, why, __version__)
    if h is not None:
        _write(a.dir, ota.refused(otaboot.read_state(a.dir), version, h, why))


def _write(ota_dir, state):
    try:
        otaboot.write_state(ota_dir, state)
        return True
    except OSError as e:
        log.error("OTA: cannot write %s/state.json: %s", ota_dir, e)
        return False


def update(a):
    """Downloads the waiting push; staged: the runtime restarts into it."""
    push = a.push
    v = push["version"]
    log.info("OTA: downloading %s from %s", v, push["manifest"])
    a.set("downloading", v)
    a.rt.send_health()
    try:
        fetch(a.dir, push, a.flavour, a.tick, __version__)
    except ValueError as e:  # OtaError: the files are not what the signed push says
        return _refuse(a, v, str(e), push["hash"])
    except Exception as e:  # OSError: the network, the server or the disk; MemoryError
        why = str(e) or type(e).__name__
        delay = a.later(why)
        log.warning("OTA: download of %s failed: %s; trying again in %d s", v, why,
                    delay // 1000)
        return
    a.drop()
    log.info("OTA: %s verified and staged; restarting into it on trial", v)
    a.set("staged", v)
    a.rt.send_health()
    a.rt.restart()


def confirm(a):
    """The trial connected and subscribed: it becomes current; older folders go."""
    s, keep = ota.trial_ok(otaboot.read_state(a.dir))
    if __version__ not in keep:  # the running one stays, whatever the file said
        keep.append(__version__)
    if _write(a.dir, s):
        prune(a.dir, keep)
    log.info("OTA: %s confirmed: connected and subscribed on trial", __version__)
    a.settle("ok", __version__)


def give_up(a):
    """The trial did not connect in time: rolled back at the restart."""
    why = "not connected within %d s" % a.trial_s
    _write(a.dir, ota.trial_failed(otaboot.read_state(a.dir), why))
    log.error("OTA: trial of %s failed: %s; restarting into the previous version",
              __version__, why)
    a.set("rolled_back", __version__, why)
    a.rt.restart()


# -- the download -------------------------------------------------------------------------------
def fetch(ota_dir, push, flavour, tick=None, running=None):
    """Downloads and verifies push's release (a dict from ota.parse_push) into
    <ota_dir>/v/<version> and stages it (state.json: trial = version). tick() runs after each
    chunk. Raises OtaError when the files are not what the signed push says (which file and
    why), OSError for the network, the server or the disk; staging is wiped either way."""
    version = push["version"]
    if version == running:
        raise OtaError("%s is the running version" % version)
    staging = ota_dir + "/staging"
    _mkdir(ota_dir)
    rmtree(staging)
    try:
        man = _manifest(push, flavour, tick)
        _mkdir(staging)
        for path, size, sha in man.files:
            _file(push["manifest"], flavour, staging, path, size, sha, tick)
        _install(ota_dir, staging, version)
    except BaseException:  # KeyboardInterrupt too: no half download stays behind
        try:
            rmtree(staging)
        except OSError:
            pass
        raise
    otaboot.write_state(ota_dir, ota.staged(otaboot.read_state(ota_dir), version))


def _manifest(push, flavour, tick):
    """The manifest, hashed while it streams and parsed line by line; its hash and version
    must be the push's."""
    man = ota.Manifest(flavour)
    h = sha256()
    rest = b""
    body = Body(push["manifest"], MANIFEST_MAX, "manifest.txt")
    try:
        while True:
            data = body.read()
            if not data:
                break
            h.update(data)
            lines = (rest + data).split(b"\n")
            rest = lines.pop()
            if len(rest) > ota.LINE_MAX:
                raise OtaError("manifest: line too long")
            for line in lines:
                man.line(_text(line))
            if tick is not None:
                tick()
    finally:
        body.close()
    if rest:
        man.line(_text(rest))
    if _hex(h) != push["sha256"]:
        raise OtaError("manifest.txt: wrong SHA-256 (not the pushed one)")
    return man.done(push["version"])


def _text(line):
    try:
        return line.decode()
    except UnicodeError:
        raise OtaError("manifest: not UTF-8")


def _file(manifest_url, flavour, staging, path, size, sha, tick):
    """One file into staging/path, its size and SHA-256 checked."""
    dest = staging
    parts = path.split("/")
    for part in parts[:-1]:  # MicroPython has no os.makedirs
        dest += "/" + part
        _mkdir(dest)
    h = sha256()
    n = 0
    body = Body(ota.file_url(manifest_url, flavour, path), size, path)
    try:
        with open(staging + "/" + path, "wb") as f:
            while True:
                data = body.read()
                if not data:
                    break
                n += len(data)
                h.update(data)
                f.write(data)
                if tick is not None:
                    tick()
            compat.fsync(f)
    finally:
        body.close()
    if n != size:
        raise OtaError("%s: %d bytes, not %d" % (path, n, size))
    if _hex(h) != sha:
        raise OtaError("%s: wrong SHA-256" % path)


def _install(ota_dir, staging, version):
    """staging -> v/<version>; an older copy of that version is moved aside first (a rename
    each: a crash never leaves a half folder under a version's name)."""
    vdir = ota_dir + "/v"
    _mkdir(vdir)
    target = vdir + "/" + version
    old = vdir + "/.old"
    rmtree(old)
    if _is_dir(target):
        os.rename(target, old)
    os.rename(staging, target)
    rmtree(old)


def prune(ota_dir, keep):
    """Removes every folder under v/ but those of the versions in keep (and a staging left
    over); never raises."""
    vdir = ota_dir + "/v"
    try:
        names = os.listdir(vdir)
    except OSError:
        names = []
    for name in names:
        if name not in keep:
            try:
                rmtree(vdir + "/" + name)
            except OSError:
                pass
    try:
        rmtree(ota_dir + "/staging")
    except OSError:
        pass


# -- files --------------------------------------------------------------------------------------
def _is_dir(path):
    try:
        return os.stat(path)[0] & 0x4000 != 0
    except OSError:
        return False


def _mkdir(path):
    if not _is_dir(path):
        os.mkdir(path)


def rmtree(path):
    """Removes path and all under it (nothing there: nothing happens)."""
    if not _is_dir(path):
        try:
            os.remove(path)
        except OSError:
            pass
        return
    for name in os.listdir(path):
        rmtree(path + "/" + name)
    os.rmdir(path)


def _hex(h):
    return hexlify(h.digest()).decode()


# -- HTTP ---------------------------------------------------------------------------------------
class Body:
    """The body of an HTTP/1.0 GET of url, read() in chunks of at most CHUNK bytes (b"" at its
    end); more than `limit` bytes is an OtaError. Anything but a 200 is an OSError (redirects
    are not followed). Errors name the file as `name` (its path in the release)."""

    def __init__(self, url, limit, name):
        host, port, path = ota.split_url(url)
        self.name = name
        self.limit = limit
        self.got = 0
        self.length = None
        addr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
        self.sock = socket.socket(addr[0], socket.SOCK_STREAM)
        try:
            self.sock.settimeout(TIMEOUT_S)
            self.sock.connect(addr[-1])
            self._send(("GET %s HTTP/1.0\r\nHost: %s:%d\r\nConnection: close\r\n\r\n"
                        % (path, host, port)).encode())
            self.buf = b""
            self._head()
        except BaseException:
            self.close()
            raise

    def _send(self, data):
        while data:
            n = self.sock.send(data)
            data = data[n:]

    def _recv(self):
        return self.sock.recv(CHUNK)

    def _line(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 1:]
                return line.rstrip(b"\r")
            if len(self.buf) > HEAD_LINE_MAX:
                raise OSError("HTTP: header line too long from %s" % self.name)
            data = self._recv()
            if not data:
                raise OSError("HTTP: connection closed in the headers of %s" % self.name)
            self.buf += data

    def _head(self):
        words = self._line().split(b" ", 2)
        if len(words) < 2 or not words[0].startswith(b"HTTP/"):
            raise OSError("HTTP: not an HTTP answer for %s" % self.name)
        if words[1] != b"200":
            raise OSError("HTTP %s for %s" % (words[1][:3].decode(), self.name))
        for _ in range(HEAD_LINES_MAX):
            line = self._line()
            if not line:
                return
            i = line.find(b":")
            if i > 0 and line[:i].strip().lower() == b"content-length":
                try:
                    self.length = int(line[i + 1:].strip())
                except ValueError:
                    self.length = -1
                if self.length < 0:
                    raise OSError("HTTP: bad Content-Length for %s" % self.name)
                if self.length > self.limit:
                    raise OtaError("%s: %d bytes, more than %d" % (self.name, self.length,
                                                                   self.limit))
        raise OSError("HTTP: too many header lines for %s" % self.name)

    def read(self):
        if self.buf:
            data, self.buf = self.buf[:CHUNK], self.buf[CHUNK:]
        elif self.length is not None and self.got >= self.length:
            return b""
        else:
            data = self._recv()
        if self.length is not None:
            data = data[:self.length - self.got]
            if not data and self.got < self.length:
                raise OSError("HTTP: %s ended after %d of %d bytes" % (self.name, self.got,
                                                                      self.length))
        self.got += len(data)
        if self.got > self.limit:
            raise OtaError("%s: more than %d bytes" % (self.name, self.limit))
        return data

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
