# Runs under the MicroPython unix port for bench/footprint.py (`make footprint`) and
# bench/bench_footprint.py (`make bench`): connects to the broker given in the environment and
# prints the heap in use (gc.mem_alloc() after gc.collect()), one "key value" line each.
#   BENCH_MODE=controller  the basket: connected, subscribed, shopping with a 20-item cart; also
#                          "modules" (the mqtt_controller modules loaded). BENCH_BOOT=board (the
#                          default): as main.py runs it, board.py reading config.json;
#                          BENCH_BOOT=env: as `-m mqtt_controller` runs it, settings from MQTT_*
#   BENCH_MODE=umqtt       umqtt.simple alone: connected and subscribed
#   BENCH_MODE=session     a whole session (start, 20 items, total, end): prints "session ok"
#   BENCH_MODE=imports     heap taken by each module the basket imports, one line per module
#                          ("import_<name> <bytes>", then the qstr pool after it: a "qstr pool:"
#                          line); BENCH_IMPORTS=a,b,c: these modules of the package, in this
#                          order (dependencies first), instead of the basket's usual ones
# BENCH_ROMFS=image: the modules come from a ROMFS image mounted at /rom (MicroPython 1.25+):
# .mpy bytecode there runs in place, as from a board's flash; the image itself (read into the
# heap here, in flash on a board) is left out of the figures, and "qstr" gives the qstr pool.
import gc
import os
import sys

ROMFS = os.getenv("BENCH_ROMFS")
if ROMFS:
    import vfs

    with open(ROMFS, "rb") as f:
        vfs.mount(vfs.VfsRom(f.read()), "/rom")
    sys.path.insert(0, "/rom")
gc.collect()
print("heap_empty", gc.mem_alloc())

MODE = os.getenv("BENCH_MODE")
PORT = int(os.getenv("BENCH_PORT"))
ITEMS = ["P%02d" % i for i in range(20)]


def login():  # basket 1's, unless MQTT_USER and MQTT_PASSWORD say otherwise
    return os.getenv("MQTT_USER") or "basket1", os.getenv("MQTT_PASSWORD") or "basket1-pw"


CONFIG = ('{"MQTT_HOST": "127.0.0.1", "MQTT_PORT": "%d", "MQTT_USER": "%s", '
          '"MQTT_PASSWORD": "%s", "MQTT_TOPIC": "basket/1", "CART_STATE_FILE": "", '
          '"ITEM_SOURCE": "none", "DISPLAY": "none", "LOG_LEVEL": "warning", '
          '"MQTT_CLIENT": "%s"}' % ((PORT,) + login() + (os.getenv("BENCH_CLIENT") or "builtin",)))


def controller():
    from mqtt_controller.startup import build

    if os.getenv("BENCH_BOOT") == "env":  # what __main__ does: settings from the environment
        rt = build()[1]
    else:
        # what main.py does, less Wi-Fi: board.py's start-up steps (boardstart.py) read
        # config.json, the runtime connects (and releases config.py, start-up code)
        from mqtt_controller import board, boardstart, compat  # noqa: F401 - main.py imports board

        with open("config.json", "w") as f:
            f.write(CONFIG)
        get = boardstart._settings("config.json")[0]
        del boardstart
        compat.release("boardstart")
        rt = build(get)[1]
    for _ in range(50):
        rt.step(100)
        if rt.connected:
            break
    assert rt.connected, "not connected"
    for _ in range(3):  # the SUBACK and the PUBACK of "online"
        rt.step(100)
    rt.controller.command(b"start")
    for code in ITEMS:
        rt.item(code)
    for _ in range(3):
        rt.step(100)
    assert rt.controller.cart.count() == 20, rt.controller.cart.count()
    return rt


def session():
    rt = controller()
    rt.controller.command(b'{"msg":"total","payload":{"basketid":1,"totalprice":123000}}')
    rt.step(100)
    rt.controller.command(b"end")
    rt.step(100)
    rt.shutdown()
    print("session ok")


def umqtt_alone():
    from umqtt.simple import MQTTClient

    user, password = login()
    c = MQTTClient("basket-1", "127.0.0.1", PORT, user, password, 60)
    c.set_callback(lambda topic, msg: None)
    c.connect(clean_session=False)
    c.subscribe(b"basket/1/status", 1)
    return c


def imports():
    # the basket's modules (DISPLAY=none, ITEM_SOURCE=none), in the order they first load
    import micropython

    names = ["compat", "log", "protocol", "cart", "controller", "config", "packet", "store",
             "runtime", "mqtt", "board", "boardstart"]
    if os.getenv("BENCH_IMPORTS"):  # the package itself on a line of its own first
        names = ["__init__"] + os.getenv("BENCH_IMPORTS").split(",")
    print("qstr_base")
    micropython.qstr_info()
    for name in names:
        gc.collect()
        before = gc.mem_alloc()
        __import__("mqtt_controller" if name == "__init__" else "mqtt_controller." + name)
        gc.collect()
        print("import_%s %d" % (name, gc.mem_alloc() - before))
        micropython.qstr_info()


def qstr_pool():
    import micropython

    micropython.qstr_info()  # "qstr pool: n_pool=.., n_qstr=.., ..., n_total_bytes=N"


if MODE == "controller":
    keep = controller()
    print("modules", ",".join(sorted(k for k in sys.modules if k.startswith("mqtt_controller"))))
elif MODE == "imports":
    imports()
elif MODE == "umqtt":
    keep = umqtt_alone()
elif MODE == "session":
    session()
gc.collect()
print("heap_in_use", gc.mem_alloc())
qstr_pool()
