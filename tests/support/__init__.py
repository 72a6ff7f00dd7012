"""Helpers shared by the tests: a real Mosquitto, MQTT peers, subprocess runners."""
