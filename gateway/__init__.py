"""mqttgate: a security gateway in front of any MQTT broker."""

__version__ = "0.1.0"
