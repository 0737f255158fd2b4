#!/usr/bin/env bash
# Runs the gateway for real on this machine: installs what is missing, makes development
# certificates and a signing key on first run, starts a local Mosquitto on 127.0.0.1:18830
# as the upstream, and serves wss://localhost:8883/mqtt until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh
MQTTGATE=.venv/bin/mqttgate

[ -f certs/server.pem ] || "$MQTTGATE" certs dev --out certs
[ -f certs/dev-signing.pem ] || "$MQTTGATE" keys dev --out certs

mkdir -p var
cat > var/mosquitto.conf <<CONF
persistence false
allow_anonymous true
log_dest file $(pwd)/var/mosquitto.log
listener 18830 127.0.0.1
CONF
[ "$(id -u)" -eq 0 ] && echo "user root" >> var/mosquitto.conf
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
"$MOSQUITTO" -c var/mosquitto.conf &
BROKER=$!
trap 'kill $BROKER 2>/dev/null || true' EXIT

TOKEN=$("$MQTTGATE" token --sub alice --claim email=alice@example.com --ttl 1h)
cat <<NEXT

mqttgate is starting: wss://localhost:8883/mqtt  (admin: http://127.0.0.1:8081/readyz)
Upstream: Mosquitto on 127.0.0.1:18830 (log: var/mosquitto.log). Policy: config/policy.json.

Next, in another terminal:
  # a token for user "alice" from the development issuer (valid 1 h)
  TOKEN=\$(.venv/bin/mqttgate token --sub alice --claim email=alice@example.com)
  # subscribe to alice's inbox and publish to it, over wss, with the token as the MQTT password
  .venv/bin/python examples/wss_client.py --token "\$TOKEN" --topic users/alice/inbox
  # a topic alice may not use is refused by the gateway:
  .venv/bin/python examples/wss_client.py --token "\$TOKEN" --topic users/bob/inbox

Here is one you can paste now:
  .venv/bin/python examples/wss_client.py --token $TOKEN --topic users/alice/inbox

NEXT
# In the background and waited for, so that the trap stops the gateway and Mosquitto
# together however this script ends (Ctrl-C, kill, a closed terminal).
"$MQTTGATE" serve --config config/gateway.toml &
GATEWAY=$!
trap 'kill $GATEWAY $BROKER 2>/dev/null || true' EXIT INT TERM HUP
wait $GATEWAY
