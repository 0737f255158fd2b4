"""Connect to mqttgate over wss with a JWT, subscribe to a topic, publish to it, print replies.

python examples/wss_client.py --token "$TOKEN" --topic users/alice/inbox
"""

from __future__ import annotations

import argparse
import queue
import ssl
import sys

import paho.mqtt.client as mqtt


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url-host", default="localhost")
    p.add_argument("--port", type=int, default=8883)
    p.add_argument("--path", default="/mqtt")
    p.add_argument(
        "--ca", default="certs/ca.pem", help="the CA that signed the gateway's certificate"
    )
    p.add_argument("--token", required=True, help="a JWT (mqttgate token --sub alice)")
    p.add_argument("--topic", required=True)
    p.add_argument("--message", default="hello from examples/wss_client.py")
    p.add_argument("--v5", action="store_true", help="MQTT 5 instead of 3.1.1")
    args = p.parse_args()

    events: queue.Queue[tuple[str, object]] = queue.Queue()
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        protocol=mqtt.MQTTv5 if args.v5 else mqtt.MQTTv311,
        transport="websockets",
    )
    # paho sends an Origin header; a non-browser client has no origin to claim.
    client.ws_set_options(
        path=args.path, headers=lambda h: {k: v for k, v in h.items() if k != "Origin"}
    )
    client.tls_set(ca_certs=args.ca, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    client.username_pw_set("jwt", args.token)
    client.on_connect = lambda c, u, f, rc, props=None: events.put(("connack", rc))
    client.on_subscribe = lambda c, u, mid, rcs, props=None: events.put(("suback", rcs))
    client.on_message = lambda c, u, m: events.put(("message", m.payload))
    client.connect(args.url_host, args.port, keepalive=30)
    client.loop_start()
    try:
        _, rc = events.get(timeout=10)
        print(f"CONNACK: {rc}")
        if getattr(rc, "is_failure", False):
            return 1
        client.subscribe(args.topic, 1)
        _, codes = events.get(timeout=10)
        print(f"SUBACK:  {[str(c) for c in codes]}")  # type: ignore[attr-defined]
        refused = any(getattr(c, "is_failure", False) for c in codes)  # type: ignore[attr-defined]
        info = client.publish(args.topic, args.message.encode(), qos=1)
        info.wait_for_publish(10)
        print(f"PUBLISH: {args.topic} acknowledged")
        try:
            kind, payload = events.get(timeout=3)
            print(f"{kind.upper()}: {payload!r}")
            return 0 if kind == "message" and not refused else 1
        except queue.Empty:
            print("no message came back (the gateway refused the subscription or the publish)")
            return 1 if not refused else 2
    finally:
        client.disconnect()
        client.loop_stop()


if __name__ == "__main__":
    sys.exit(main())
