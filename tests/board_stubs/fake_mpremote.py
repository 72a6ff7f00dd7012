#!/usr/bin/env python3
"""A stand-in for mpremote in the deploy tests: `connect PORT` then commands joined by `+`
(exec, fs cp, reset), played on a folder that is the board's flash ($FAKE_BOARD_DIR) with the
MicroPython unix port. Another PORT than $FAKE_BOARD_PORT: no board, as mpremote says it."""

import os
import shutil
import subprocess
import sys

args = sys.argv[1:]
flash = os.environ["FAKE_BOARD_DIR"]
log = open(os.path.join(flash, "..", "mpremote.log"), "a")
log.write(" ".join(a.replace("\n", "\\n") for a in args) + "\n")
if args[:1] != ["connect"] or args[1] != os.environ.get("FAKE_BOARD_PORT"):
    print("mpremote: failed to access %s (it may be in use by another program)" % args[1])
    sys.exit(1)
cmds, cur = [], []
for a in args[2:]:
    if a == "+":
        cmds.append(cur)
        cur = []
    else:
        cur.append(a)
cmds.append(cur)
for c in cmds:
    if c[0] == "exec":
        r = subprocess.run([os.environ["MICROPYTHON"], "-c", c[1]], cwd=flash)
        if r.returncode:
            sys.exit(1)
    elif c[:2] == ["fs", "cp"]:
        src, dst = c[2], c[3]
        assert dst.startswith(":"), dst
        print("cp %s %s" % (src, dst))
        shutil.copyfile(src, os.path.join(flash, dst[1:]))
    elif c == ["reset"]:
        print("reset")
    else:
        print("fake mpremote: unknown command %r" % c)
        sys.exit(2)
