# MicroPython heap once connected: `micropython mp_heap.py controller|umqtt|baseline`, with the
# modules compiled to .mpy on MICROPYPATH (as a board loads them). Prints one line:
# HEAP <bytes after gc.collect()> MODULES <comma-separated mqtt_controller modules loaded>
import gc
import os
import sys

mode = sys.argv[1]
env = os.getenv
if mode == "controller":
    from mqtt_controller.runtime import build  # what __main__ does (config.py released after)

    rt = build()[1]
    for _ in range(200):  # connect, subscribe, online + the cart's update acknowledged
        rt.step(20)
        if rt.connected and not rt.client.inflight:
            break
    for _ in range(5):  # SUBACK and anything else in flight
        rt.step(20)
    assert rt.connected and rt.controller.cart.count() > 0
    held = rt  # keep it alive through the collection
elif mode == "imports":  # the same modules, nothing connected: the code's share of the heap
    from mqtt_controller import config, mqtt  # noqa: F401
    from mqtt_controller.runtime import Runtime, open_io  # noqa: F401

    open_io(config.load())
    del config
    from mqtt_controller.compat import release

    release("config")  # as build() does
    held = None
elif mode == "umqtt":
    from umqtt.simple import MQTTClient

    held = MQTTClient(env("MQTT_CLIENT_ID") or "umqtt-heap", env("MQTT_HOST"),
                      int(env("MQTT_PORT")), env("MQTT_USER"), env("MQTT_PASSWORD"), keepalive=60)
    held.connect()
else:
    held = None
gc.collect()
used = gc.mem_alloc()
names = sorted(k for k in sys.modules if k.startswith("mqtt_controller"))
print("HEAP %d MODULES %s" % (used, ",".join(names)))
