# Runs the real MQTTClient against a (fake) broker until the link closes and reports memory:
#   micropython tests/support/faults_memclient.py PORT   (gc.mem_alloc after gc.collect)
#   python tests/support/faults_memclient.py PORT        (tracemalloc)
# Prints "RESULT base=.. peak=.. received=.. skipped=.. end=..". Common subset: it runs on both.
import gc
import sys

from mqtt_controller.mqtt import MQTTClient
from mqtt_controller.packet import MQTTException

try:
    import tracemalloc
except ImportError:
    tracemalloc = None  # type: ignore[assignment]


def used():
    gc.collect()
    if tracemalloc is not None:
        return tracemalloc.get_traced_memory()[0]
    return gc.mem_alloc()


def main(port):
    if tracemalloc is not None:
        tracemalloc.start()
    c = MQTTClient("memcheck", "127.0.0.1", port, keepalive=60)
    c.connect()
    c.subscribe("basket/1/status", 1)
    received = [0]
    feed = c.reader.feed

    def counting_feed(data):
        received[0] += len(data)
        return feed(data)

    c.reader.feed = counting_feed
    base = used()
    peak = base
    end = "timeout"
    for _ in range(200000):
        try:
            c.poll(2000)
        except OSError:
            end = "closed"
            break
        except MQTTException as e:
            end = "protocol:%s" % str(e).replace(" ", "_")
            break
        m = used()
        if m > peak:
            peak = m
    c.close()
    print("RESULT base=%d peak=%d received=%d skipped=%d end=%s" % (
        base, peak, received[0], c.reader.skipped, end))


main(int(sys.argv[1]))
