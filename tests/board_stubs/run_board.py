# Plays a MicroPython board's start-up under the unix port: boot.py, then main.py, in one VM,
# with the current directory as the board's flash. Prints "REPL" where a board would give it.
# Do not upload.
import sys

# A board's sys.path: the flash root, frozen modules, /lib; then the stand-ins (MICROPYPATH).
sys.path[:] = ["", ".frozen", "lib"] + [p for p in sys.path if p not in ("", ".frozen", "lib")]


def run(name):
    try:
        with open(name) as f:
            src = f.read()
    except OSError:
        return
    try:
        exec(compile(src, name, "exec"), {"__name__": "__main__", "__file__": name})
    except SystemExit:
        raise
    except BaseException as e:  # the firmware prints it and carries on
        sys.print_exception(e)


run("boot.py")
run("main.py")
print("REPL")
