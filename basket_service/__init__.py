"""basket_service: the backend that prices smart-basket carts over MQTT (CPython only)."""

__version__ = "0.1.0"
