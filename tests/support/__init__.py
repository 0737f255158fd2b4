"""Fixtures' building blocks: a real Mosquitto, a gateway in a thread, real clients."""
