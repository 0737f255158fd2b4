// What a browser application does with MQTT.js, exposed to the tests as window.mqttPage.
// Every answer is what the page itself saw: CONNACK, SUBACK codes, PUBACK errors, AUTH,
// server DISCONNECT reason codes, messages.
'use strict';

const clients = new Map();

function record(name) {
  return { messages: [], errors: [], auth: [], disconnects: [], closed: false, connack: null };
}

window.mqttPage = {
  clients,
  /** Connect and resolve with the CONNACK, or reject with what went wrong. */
  connect(name, url, options) {
    const seen = record(name);
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options });
    clients.set(name, { client, seen });
    // MQTT.js's hook for AUTH packets from the server (enhanced authentication).
    client.handleAuth = (packet, callback) => { seen.auth.push(packet.reasonCode); callback(); };
    client.on('message', (topic, payload, packet) => seen.messages.push({ topic, payload: payload.toString(), qos: packet.qos }));
    client.on('disconnect', (packet) => seen.disconnects.push(packet.reasonCode));
    client.on('close', () => { seen.closed = true; });
    return new Promise((resolve, reject) => {
      client.once('connect', (connack) => {
        seen.connack = { returnCode: connack.returnCode, reasonCode: connack.reasonCode, sessionPresent: connack.sessionPresent };
        resolve(seen.connack);
      });
      client.on('error', (err) => {
        seen.errors.push({ message: err.message, code: err.code ?? null });
        reject({ error: err.message, code: err.code ?? null });
      });
      client.once('close', () => reject({ error: 'closed before CONNACK', code: null }));
    });
  },
  /** One SUBSCRIBE with every filter; resolves with the SUBACK codes as the page got them. */
  subscribe(name, filters) {
    const { client } = clients.get(name);
    const map = Object.fromEntries(filters.map((f) => [f.topic, { qos: f.qos }]));
    return new Promise((resolve) => {
      client.subscribe(map, (err, granted, packet) => {
        const suback = (err && err.packet) || packet;
        resolve({ error: err ? err.message : null, codes: suback ? suback.granted : (granted || []).map((g) => g.qos) });
      });
    });
  },
  /** Resolves with the PUBACK outcome (an error carries the v5 reason code). */
  publish(name, topic, payload, qos, retain) {
    const { client } = clients.get(name);
    return new Promise((resolve) => {
      client.publish(topic, payload, { qos, retain: !!retain }, (err, packet) => {
        resolve({ error: err ? err.message : null, code: err ? err.code : (packet && packet.reasonCode) ?? 0 });
      });
    });
  },
  /** MQTT 5.0 §4.12.1 re-authentication: AUTH 0x19 with the fresh token (docs/auth.md). */
  reauthenticate(name, token) {
    const { client } = clients.get(name);
    client._sendPacket({
      cmd: 'auth',
      reasonCode: 0x19,
      properties: { authenticationMethod: 'jwt', authenticationData: new TextEncoder().encode(token) },
    });
    return true;
  },
  seen(name) { return clients.get(name).seen; },
  connected(name) { return clients.get(name).client.connected; },
  end(name) {
    const { client } = clients.get(name);
    return new Promise((resolve) => client.end(false, {}, () => resolve(true)));
  },
};
