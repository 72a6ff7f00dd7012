"""Sends a basket what the service would: `start`, a running `total`, then `end`, on
basket/<n>/status (QoS 1). Settings as the service (MQTT_HOST, MQTT_PORT, MQTT_USER, ...).

    python examples/mqtt_publish_examples.py --basket 1 --total 27800 --pause 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from basket_service import config, contract, mqttlink  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--basket", type=int, default=1)
    p.add_argument("--total", type=int, default=27800, help="won")
    p.add_argument("--pause", type=float, default=1.0, help="seconds between messages")
    args = p.parse_args(argv)
    try:
        settings = config.load()
    except config.ConfigError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    topic = contract.status_topic(args.basket)
    steps = [contract.START, contract.total_payload(args.basket, args.total), contract.END]
    try:
        for i, payload in enumerate(steps):
            if i:
                time.sleep(args.pause)
            mqttlink.publish_once(settings, [(topic, payload)])
            print("%s %s" % (topic, payload.decode()), flush=True)
    except mqttlink.LinkError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
