# Shared by the machine and network stand-ins: steering files and the call log. Do not upload.
import os
import time

DIR = os.getenv("BOARD_STUB_DIR") or "."


def read(name, default=None):
    try:
        with open(DIR + "/" + name) as f:
            return f.read().strip()
    except OSError:
        return default


def log(line):
    with open(DIR + "/calls.log", "a") as f:
        f.write("%d %s\n" % (time.ticks_ms(), line))
