# YRM100 UHF RFID reader serial protocol: command encoder and an incremental, resynchronising
# frame decoder. Pure (no I/O); runs unchanged on CPython and MicroPython.
#
# Frame: BB type cmd len_hi len_lo params.. checksum 7E, where checksum is the low byte of the
# sum of type, cmd, both length bytes and the params. Types: 0 command, 1 response,
# 2 notification. A tag read is a notification with cmd 0x22 whose params are
# RSSI (signed dBm), PC (2 bytes; top 5 bits = EPC length in words), EPC, CRC (2 bytes).
#
# Decoder(max_params).feed(data) -> list of (type, cmd, params) tuples; garbage is skipped,
# frames with a bad checksum or a wrong length are dropped and counted (attributes garbage,
# bad_checksum, bad_length). parse_tag(params) -> (rssi, pc, epc, crc) or None.
# product_code(epc) -> the 4-character product code or None.
from mqtt_controller.compat import const

HEADER = const(0xBB)
END = const(0x7E)
TYPE_COMMAND = const(0x00)
TYPE_RESPONSE = const(0x01)
TYPE_NOTICE = const(0x02)

CMD_TAG = const(0x22)  # single polling, and the command code of tag notifications
CMD_MULTI_POLL = const(0x27)
CMD_STOP = const(0x28)
CMD_SET_REGION = const(0x07)
CMD_SET_POWER = const(0xB6)
CMD_GET_POWER = const(0xB7)
CMD_SET_CHANNEL = const(0xAB)
CMD_HOPPING = const(0xAD)
CMD_ERROR = const(0xFF)

ERR_NO_TAG = const(0x15)  # an inventory round found no tag
ERR_COMMAND = const(0x17)

# Region codes of the module.
REGIONS = {"CN900": 0x01, "US": 0x02, "EU": 0x03, "CN800": 0x04, "KR": 0x06}

MAX_PARAMS = const(128)  # longest params we accept; a 496-bit EPC notification needs 67
_CHUNK = const(256)


def checksum(body):
    """Low byte of the sum of type, command, length and params (`body`)."""
    s = 0
    for b in body:
        s += b
    return s & 0xFF


def frame(cmd, params=b"", ftype=TYPE_COMMAND):
    """One complete frame as bytes."""
    n = len(params)
    body = bytes((ftype, cmd, (n >> 8) & 0xFF, n & 0xFF)) + bytes(params)
    return bytes((HEADER,)) + body + bytes((checksum(body), END))


def cmd_multi_poll(count):
    """Multiple polling: the module runs `count` (1-65535) inventory rounds, one notification
    per tag read."""
    if not 1 <= count <= 0xFFFF:
        raise ValueError("poll count must be 1-65535")
    return frame(CMD_MULTI_POLL, bytes((0x22, count >> 8, count & 0xFF)))


def cmd_stop():
    return frame(CMD_STOP)


def cmd_set_region(code):
    return frame(CMD_SET_REGION, bytes((code & 0xFF,)))


def cmd_set_power(dbm_x100):
    """Transmit power in hundredths of a dBm (2600 = 26 dBm)."""
    if not 0 <= dbm_x100 <= 0xFFFF:
        raise ValueError("power out of range")
    return frame(CMD_SET_POWER, bytes((dbm_x100 >> 8, dbm_x100 & 0xFF)))


def cmd_hopping(on):
    """Automatic frequency hopping on (0xFF) or off (0x00)."""
    return frame(CMD_HOPPING, b"\xff" if on else b"\x00")


def cmd_set_channel(index):
    return frame(CMD_SET_CHANNEL, bytes((index & 0xFF,)))


def response(cmd, params=b"\x00"):
    """A response frame (the emulator's and the tests' side)."""
    return frame(cmd, params, TYPE_RESPONSE)


def error_response(code):
    return frame(CMD_ERROR, bytes((code & 0xFF,)), TYPE_RESPONSE)


def tag_notice(epc, rssi, pc=None, crc=0):
    """A tag-read notification for `epc` (an even number of bytes) at `rssi` dBm."""
    if pc is None:
        pc = (len(epc) // 2) << 11
    params = bytes((rssi & 0xFF, pc >> 8, pc & 0xFF)) + bytes(epc) + bytes((crc >> 8, crc & 0xFF))
    return frame(CMD_TAG, params, TYPE_NOTICE)


def parse_tag(params):
    """(rssi, pc, epc, crc) from the params of a tag notification, or None when the EPC length
    given by the PC word does not match the frame."""
    if len(params) < 5:
        return None
    rssi = params[0]
    if rssi >= 128:
        rssi -= 256
    pc = (params[1] << 8) | params[2]
    n = (pc >> 11) * 2
    if len(params) != 5 + n:
        return None
    epc = bytes(params[3:3 + n])
    crc = (params[3 + n] << 8) | params[4 + n]
    return rssi, pc, epc, crc


def _code_char(b):
    return (0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A or 0x30 <= b <= 0x39
            or b == 0x5F or b == 0x2D or b == 0x2E)


def product_code(epc):
    """The product code: the first 4 EPC bytes read as ASCII, or None unless each is one of
    A-Z a-z 0-9 _ - . (the line protocol's code alphabet)."""
    if len(epc) < 4:
        return None
    for i in range(4):
        if not _code_char(epc[i]):
            return None
    return bytes(epc[:4]).decode()


class Decoder:
    """Incremental stream decoder. The buffer never holds more than one partial frame
    (at most 7 + max_params bytes), whatever feed() is given."""

    def __init__(self, max_params=MAX_PARAMS):
        self.max_params = max_params
        self._buf = bytearray()
        self.frames = 0
        self.garbage = 0  # bytes skipped while looking for a frame
        self.bad_checksum = 0
        self.bad_length = 0

    def reset(self):
        self._buf = bytearray()

    def feed(self, data):
        out = []
        if not data:
            return out
        for i in range(0, len(data), _CHUNK):
            self._buf.extend(data[i:i + _CHUNK])
            self._scan(out)
        return out

    def _scan(self, out):
        buf = self._buf
        pos = 0
        n = len(buf)
        while pos < n:
            if buf[pos] != HEADER:
                start = pos
                while pos < n and buf[pos] != HEADER:
                    pos += 1
                self.garbage += pos - start
                continue
            if n - pos < 5:
                break
            ftype = buf[pos + 1]
            plen = (buf[pos + 3] << 8) | buf[pos + 4]
            if ftype > TYPE_NOTICE or plen > self.max_params:
                # not a frame start (or an absurd length): resync on the next header byte
                self.bad_length += 1
                pos += 1
                continue
            total = plen + 7
            if n - pos < total:
                break
            if buf[pos + total - 1] != END:
                self.bad_length += 1
                pos += 1
                continue
            if checksum(buf[pos + 1:pos + total - 2]) != buf[pos + total - 2]:
                self.bad_checksum += 1
                pos += 1
                continue
            out.append((ftype, buf[pos + 2], bytes(buf[pos + 5:pos + 5 + plen])))
            self.frames += 1
            pos += total
        if pos:
            self._buf = buf[pos:]
