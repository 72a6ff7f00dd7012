"""basket_service: the backend that prices smart-basket carts over MQTT (CPython only)."""

from mqtt_controller import __version__ as __version__  # the project's one version
