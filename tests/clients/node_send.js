// Sends events to weir with a real Node.js forward client and exits 0 only when every emit
// succeeded (with acks, when asked for). Driven by weir's end-to-end tests.
//
// Usage: node node_send.js '<json spec>'
// spec: { library: "fluent-logger" | "@fluent-org/logger", host, port, mode, ack,
//         tls: { ca: "<path>" } | null, security: { clientHostname, sharedKey, username, password } | null,
//         tagPrefix, events: [{ label, record, sec, nsec }], timeoutMs }
"use strict";
const path = require("path");
const fs = require("fs");
const modules = path.join(__dirname, "..", "node", "node_modules");
const spec = JSON.parse(process.argv[2]);

function fail(msg) {
  console.error("node client: " + msg);
  process.exit(1);
}

const timer = setTimeout(() => fail("timed out"), spec.timeoutMs || 20000);

async function withFluentOrg() {
  const { FluentClient, EventTime } = require(path.join(modules, "@fluent-org/logger"));
  const socket = { host: spec.host, port: spec.port, disableReconnect: true, timeout: 10000 };
  if (spec.tls) {
    socket.tls = { ca: fs.readFileSync(spec.tls.ca), servername: "localhost" };
  }
  const options = { eventMode: spec.mode, socket };
  if (spec.security) options.security = spec.security;
  if (spec.ack) options.ack = { ackTimeout: 10000 };
  const client = new FluentClient(spec.tagPrefix, options);
  // With reconnects disabled the client does not connect by itself.
  await client.connect();
  const sends = spec.events.map((e) => client.emit(e.label, e.record, new EventTime(e.sec, e.nsec)));
  await client.flush();
  await Promise.all(sends);
  await client.shutdown();
}

function withFluentLogger() {
  const logger = require(path.join(modules, "fluent-logger"));
  const options = {
    host: spec.host,
    port: spec.port,
    timeout: 10.0,
    reconnectInterval: 600000,
    eventMode: spec.mode,
    requireAckResponse: !!spec.ack,
    ackResponseTimeout: 10000,
  };
  if (spec.tls) {
    options.tls = true;
    options.tlsOptions = { ca: fs.readFileSync(spec.tls.ca), servername: "localhost" };
  }
  if (spec.security) options.security = spec.security;
  const sender = logger.createFluentSender(spec.tagPrefix, options);
  let failed = null;
  sender.on("error", (err) => {
    failed = err;
  });
  return new Promise((resolve, reject) => {
    let pending = spec.events.length;
    if (pending === 0) return resolve();
    for (const e of spec.events) {
      sender.emit(e.label, e.record, new logger.EventTime(e.sec, e.nsec), (err) => {
        if (err || failed) return reject(err || failed);
        pending -= 1;
        if (pending === 0) {
          // In the packed modes the callbacks fire when the batch is flushed.
          sender.end(null, null, () => resolve());
        }
      });
    }
  });
}

(async () => {
  try {
    if (spec.library === "@fluent-org/logger") await withFluentOrg();
    else await withFluentLogger();
    clearTimeout(timer);
    process.exit(0);
  } catch (err) {
    fail(err && err.stack ? err.stack : String(err));
  }
})();
