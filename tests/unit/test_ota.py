# ota.py, the pure part of updates over the air: the HMAC against RFC 4231 and CPython's hmac,
# the signed push, the manifest, the URLs and every state.json change (the boot decision).
# Random payloads (a fixed seed) never get anything but OtaError out of it.
import json
from binascii import hexlify

from _util import MICROPYTHON, raises, skip

from mqtt_controller import ota
from mqtt_controller.ota import OtaError

KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
SIG = "44eb9a83de44feee7f438c582739fd7873da8d5914d77c4ea62c4f7f287e3709"  # CPython's hmac
URL = "http://192.168.1.10:8080/releases/2.0.1/manifest.txt"


def _hex(b):
    return hexlify(b).decode()


class Rand:
    """A fixed-seed generator (the same cases under both interpreters, no `random` needed)."""

    def __init__(self, seed):
        self.x = seed

    def below(self, n):
        self.x = (self.x * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.x >> 8) % n

    def data(self, n):
        return bytes(self.below(256) for _ in range(n))


def push(**kw):
    doc = {"version": "2.0.1", "manifest": URL, "sha256": SHA, "sig": SIG}
    doc.update(kw)
    return json.dumps(doc).encode()


# -- versions, the HMAC, the signature --------------------------------------------------------
def test_versions_are_short_plain_names_not_starting_with_a_dot():
    for v in ("1", "2.0.1", "v3-rc.1+build_7", "a" * 32):
        assert ota.valid_version(v), v
    for v in ("", ".1", "a" * 33, "1/2", "..", "1 2", "1\n", None, 1, "é"):
        assert not ota.valid_version(v), v


def test_hmac_sha256_gives_the_rfc_4231_values():
    assert _hex(ota.hmac_sha256(b"\x0b" * 20, b"Hi There")) == \
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    assert _hex(ota.hmac_sha256(b"Jefe", b"what do ya want for nothing?")) == \
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    # a key longer than the block is hashed first
    assert _hex(ota.hmac_sha256(b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash "
                                                b"Key First")) == \
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"


def test_hmac_sha256_matches_cpythons_hmac_for_every_key_length():
    if MICROPYTHON:
        skip("CPython's hmac module is the reference")
    import hashlib
    import hmac

    r = Rand(7)
    for n in range(0, 140, 3):
        key, msg = r.data(n), r.data(r.below(300))
        assert ota.hmac_sha256(key, msg) == hmac.new(key, msg, hashlib.sha256).digest(), n


def test_the_signature_is_the_hmac_of_id_version_and_hash_under_the_key_text():
    assert ota.signature(7, "2.0.1", SHA, KEY) == SIG
    assert ota.signature(7, "2.0.1", SHA, KEY.encode()) == SIG
    assert ota.signature(8, "2.0.1", SHA, KEY) != SIG  # another basket's
    assert ota.signature(7, "2.0.2", SHA, KEY) != SIG


# -- the push ---------------------------------------------------------------------------------
def test_a_good_push_parses_and_an_empty_one_means_no_update():
    assert ota.parse_push(push(), 7, KEY) == {"version": "2.0.1", "manifest": URL,
                                              "sha256": SHA, "sig": SIG}
    assert ota.parse_push(bytearray(push(extra="ignored")), 7, KEY)["version"] == "2.0.1"
    assert ota.parse_push(b"", 7, KEY) is None
    assert ota.parse_push(b"", 7, None) is None


def _reason(payload, basket=7, key=KEY):
    return str(raises(OtaError, ota.parse_push, payload, basket, key))


def test_a_bad_push_is_refused_with_a_short_reason():
    assert _reason(push(), key=None) == "no OTA_KEY"
    assert _reason(push(), key="") == "no OTA_KEY"
    assert _reason(b"{" * 1025) == "push too big"
    assert _reason(b"{not json") == "bad JSON"
    assert _reason(b"\xff\xfe") == "bad JSON"
    assert _reason(b"[1, 2]") == "push must be a JSON object"
    assert _reason(push(version="../x")) == "bad version"
    assert _reason(push(version=2)) == "bad version"
    assert _reason(push(manifest="https://h/releases/2.0.1/manifest.txt")) == \
        "manifest URL must be http://"
    assert _reason(push(manifest="http://h/releases/2.0.1/other.txt")) == \
        "manifest URL must end in /manifest.txt"
    assert _reason(push(manifest="http://h:99999/manifest.txt")) == "bad port in URL"
    assert _reason(push(manifest=5)) == "bad manifest URL"
    assert _reason(push(sha256=SHA.upper())) == "sha256 must be 64 lowercase hex digits"
    assert _reason(push(sig=SIG[:-1])) == "sig must be 64 lowercase hex digits"


def test_a_signature_for_another_basket_version_hash_or_key_is_refused():
    assert _reason(push(), basket=8) == "bad signature"
    assert _reason(push(version="2.0.2")) == "bad signature"
    assert _reason(push(sha256="0" * 64)) == "bad signature"
    assert _reason(push(), key=KEY[:-1] + "0") == "bad signature"
    assert _reason(push(sig=SIG[:-1] + ("0" if SIG[-1] != "0" else "1"))) == "bad signature"
    # the key is the hex text itself, not the 32 bytes it spells
    from binascii import unhexlify
    assert _reason(push(), key=unhexlify(KEY)) == "bad signature"


def test_random_and_mangled_pushes_only_ever_raise_ota_error():
    r = Rand(15)
    good = push()
    for i in range(400):
        if i % 2:
            payload = r.data(r.below(80))
        else:  # a good push with a few bytes changed
            b = bytearray(good)
            for _ in range(1 + r.below(3)):
                b[r.below(len(b))] = r.below(256)
            payload = bytes(b)
        try:
            out = ota.parse_push(payload, 7, KEY)
        except OtaError:
            continue
        assert out is None or out["sig"] == ota.signature(7, out["version"], out["sha256"], KEY)


# -- URLs -------------------------------------------------------------------------------------
def test_urls_split_into_host_port_and_path_http_only():
    assert ota.split_url(URL) == ("192.168.1.10", 8080, "/releases/2.0.1/manifest.txt")
    assert ota.split_url("http://store.local/m") == ("store.local", 80, "/m")
    assert ota.split_url("http://store") == ("store", 80, "/")
    for bad in ("https://h/x", "ftp://h/x", "http:///x", "http://h:/x", "http://h:0/x",
                "http://h:8080x/x", "http://h/a b", "http://h/a\r\nHost: evil", "http://u@h/x",
                "http://h/" + "a" * 300, None):
        raises(OtaError, ota.split_url, bad)


def test_a_file_url_is_the_manifest_url_with_flavour_and_path():
    assert ota.file_url(URL, "mpy", "mqtt_controller/cart.mpy") == \
        "http://192.168.1.10:8080/releases/2.0.1/mpy/mqtt_controller/cart.mpy"


# -- the manifest -----------------------------------------------------------------------------
def _manifest(flavour, lines):
    m = ota.Manifest(flavour)
    for ln in lines:
        m.line(ln)
    return m.done()


LINES = ["smart-basket-release 1", "version 2.0.1",
         "file py 120 %s boot.py" % SHA, "file mpy 120 %s boot.py" % SHA,
         "file py 3000 %s mqtt_controller/__init__.py" % ("a" * 64),
         "file mpy 900 %s mqtt_controller/__init__.mpy" % ("b" * 64), ""]


def test_a_manifest_keeps_the_file_lines_of_its_flavour():
    m = _manifest("py", LINES)
    assert m.version == "2.0.1"
    assert m.files == [("boot.py", 120, SHA), ("mqtt_controller/__init__.py", 3000, "a" * 64)]
    m = _manifest("mpy", LINES)
    assert m.files == [("boot.py", 120, SHA), ("mqtt_controller/__init__.mpy", 900, "b" * 64)]
    assert ota.Manifest("mpy").flavour == "mpy"
    raises(OtaError, ota.Manifest, "exe")


def _manifest_error(lines, flavour="py", version=None):
    m = ota.Manifest(flavour)

    def feed():
        for ln in lines:
            m.line(ln)
        m.done(version)

    return str(raises(OtaError, feed))


def test_a_bad_manifest_is_refused():
    head, body = LINES[:2], LINES[2:]
    assert _manifest_error([]) == "empty manifest"
    assert _manifest_error(["smart-basket-release 2"] + LINES[1:]).startswith("not a release")
    assert _manifest_error(LINES[:1] + body) == "no version line"
    assert _manifest_error(head + ["version 2.0.2"] + body) == "bad version line"
    assert _manifest_error(LINES, version="2.0.2") == "manifest is for 2.0.1, not 2.0.2"
    assert _manifest_error(head + ["nonsense"]).startswith("bad manifest line")
    assert _manifest_error(LINES[:4]) == "no mqtt_controller/__init__.py in the py files"
    assert _manifest_error(head + [LINES[2], LINES[2]]) == "boot.py listed twice"
    assert _manifest_error(head + ["x" * 300]) == "manifest line too long"
    assert _manifest_error(head + ["file exe 1 %s a.py" % SHA]).startswith("unknown flavour")
    for size in ("-1", "65537", "1e3", "", "0x10", "1234567"):
        assert _manifest_error(head + ["file py %s %s a.py" % (size, SHA)]) == \
            "bad size for a.py", size
    assert _manifest_error(head + ["file py 1 %s a.py" % SHA.upper()]) == "bad sha256 for a.py"
    for path in ("../boot.py", "/boot.py", "a/../../b.py", "a//b.py", "a/./b.py", "a/",
                 "a b.py", "a\\b.py", "x" * 65, "a.py\r"):
        assert _manifest_error(head + ["file py 1 %s %s" % (SHA, path)]).startswith("bad "), path
    many = ["file mpy 1 %s f%d.mpy" % (SHA, i) for i in range(65)]
    assert _manifest_error(head + many, "mpy") == "more than 64 mpy files"
    # the other flavour's lines do not count against a basket's own, only against all lines
    assert _manifest_error(head + many) == "no mqtt_controller/__init__.py in the py files"
    assert _manifest_error(head + many + many[:64]) == "more than 128 file lines"


def test_random_manifest_lines_only_ever_raise_ota_error():
    r = Rand(3)
    words = ["file", "py", "mpy", "version", "1", "65536", SHA, "a.py", "..", "", " ", "2.0"]
    for _ in range(300):
        m = ota.Manifest("py")
        try:
            m.line("smart-basket-release 1")
            for _ in range(r.below(6)):
                m.line(" ".join(words[r.below(len(words))] for _ in range(r.below(7))))
            m.done()
        except OtaError:
            pass
        try:
            m.line(r.data(r.below(40)).decode("latin-1") if not MICROPYTHON else
                   "".join(chr(32 + r.below(95)) for _ in range(r.below(40))))
        except OtaError:
            pass


# -- state.json -------------------------------------------------------------------------------
def st(**kw):
    s = ota.new_state()
    s.update(kw)
    return s


def last(state, version, error=None):
    return {"state": state, "version": version, "error": error}


def test_no_state_runs_the_factory_code_and_changes_nothing():
    assert ota.decide(ota.new_state()) == (None, ota.new_state(), False)
    assert ota.decide(st(current="2.0", previous="1.0")) == \
        ("2.0", st(current="2.0", previous="1.0"), False)


def test_a_staged_trial_is_counted_before_it_runs():
    s = ota.staged(st(current="2.0"), "3.0")
    assert s == st(current="2.0", trial="3.0", tries=0)
    assert ota.decide(s) == ("3.0", st(current="2.0", trial="3.0", tries=1), True)
    raises(OtaError, ota.staged, s, "../3.0")


def test_a_trial_started_once_and_never_confirmed_is_rolled_back():
    v, s, changed = ota.decide(st(current="2.0", trial="3.0", tries=1))
    assert (v, changed) == ("2.0", True)
    assert s == st(current="2.0", last=last("rolled_back", "3.0", ota.STRANDED))
    # the reason the trial wrote before it stopped wins over the guess
    v, s, _ = ota.decide(st(current="2.0", trial="3.0", tries=2,
                            last=last("failed", "3.0", "MemoryError: x")))
    assert (v, s["last"]) == ("2.0", last("rolled_back", "3.0", "MemoryError: x"))
    # a trial with nothing older goes back to the factory code
    assert ota.decide(st(trial="1.0", tries=1))[0] is None


def test_missing_version_folders_fall_back_to_previous_then_factory():
    have = {"1.0"}.__contains__
    v, s, changed = ota.decide(st(current="2.0", previous="1.0"), have)
    assert (v, changed) == ("1.0", True)
    assert s == st(current="1.0", last=last("failed", "2.0", "v/2.0 is missing"))
    v, s, _ = ota.decide(st(current="2.0", previous="0.9"), have)
    assert (v, s["current"], s["previous"]) == (None, None, None)
    v, s, _ = ota.decide(st(current="1.0", trial="3.0"), have)  # the trial's folder is gone
    assert (v, s) == ("1.0", st(current="1.0", last=last("rolled_back", "3.0",
                                                          "v/3.0 is missing")))


def test_a_confirmed_trial_becomes_current_and_the_old_current_previous():
    s, keep = ota.trial_ok(st(current="2.0", previous="1.0", trial="3.0", tries=1))
    assert s == st(current="3.0", previous="2.0", last=last("ok", "3.0"))
    assert keep == ["3.0", "2.0"]
    assert ota.trial_ok(st(trial="1.0", tries=1)) == (
        st(current="1.0", last=last("ok", "1.0")), ["1.0"])
    assert ota.trial_ok(st(current="2.0")) == (st(current="2.0"), ["2.0"])  # no trial: as is


def test_a_failed_trial_and_a_refused_push_are_remembered_with_the_reason():
    s = ota.trial_failed(st(current="2.0", trial="3.0", tries=1), "not connected within 120 s")
    assert s == st(current="2.0", last=last("rolled_back", "3.0", "not connected within 120 s"))
    s = ota.trial_failed(st(current="2.0", trial="3.0", tries=1), "x" * 500)
    assert len(s["last"]["error"]) == ota.REASON_MAX and s["last"]["error"].endswith("...")
    s = ota.refused(st(current="2.0"), "3.0", SHA, "bad signature")
    assert s == st(current="2.0", refused=SHA, last=last("failed", "3.0", "bad signature"))
    s = ota.refused(st(), "../x", "nope", "bad version")
    assert (s["refused"], s["last"]) == (None, last("failed", None, "bad version"))


def test_a_damaged_state_never_names_a_path_outside_v():
    bad = {"current": "../../etc", "previous": 3, "trial": "/abs", "tries": True,
           "last": {"state": "ok", "version": "../x", "error": None}, "refused": "zz"}
    assert ota.clean_state(bad) == ota.new_state()
    assert ota.clean_state([1]) == ota.new_state()
    assert ota.decide("nonsense") == (None, ota.new_state(), True)
    # a trial whose count was lost is taken as started: rolled back, never run blind again
    assert ota.clean_state({"trial": "3.0", "tries": "0"})["tries"] == 1
    assert ota.clean_state({"trial": "3.0", "tries": -1})["tries"] == 1
    kept = st(current="2.0", previous="1.0", tries=0, last=last("ok", "2.0"), refused=SHA)
    assert ota.clean_state(json.loads(json.dumps(kept))) == kept


def test_random_states_decide_without_raising():
    r = Rand(11)
    values = [None, "2.0", "../x", 1, -1, 0, True, "", [], {}, "a" * 40, SHA,
              {"state": "failed", "version": "2.0", "error": "e"},
              {"state": "rolled_back", "version": None, "error": None}]
    keys = list(ota.new_state()) + ["other"]
    for _ in range(300):
        doc = {}
        for k in keys:
            if r.below(3):
                doc[k] = values[r.below(len(values))]
        v, s, _ = ota.decide(doc, lambda v: r.below(2) == 1)
        assert v is None or ota.valid_version(v)
        assert s == ota.clean_state(s)  # what it hands back survives a round trip as is
