// Requests: wait for the connection, time out (after one more loop turn), match by id within
// the current connection only, and fail with the protocol code. PROTOCOL §10 (2026-12-07): the
// error says whether the request was sent (`err.sent`; docs/clients.md "Request errors").

import { test } from "node:test";
import assert from "node:assert/strict";
import { RealtimeError } from "../../realtime/static/realtime/realtime.js";
import { setup, flush, pub } from "./fake.mjs";

function connected() {
  const env = setup();
  env.client.connect();
  env.welcome();
  return env;
}

const code = (c) => (e) => e instanceof RealtimeError && e.code === c;
/** The error has this code and says it was (or was not) sent. */
const failed = (c, sent) => (e) => code(c)(e) && e.sent === sent;

test("publish resolves {channel, epoch, offset} from `published`", async () => {
  const env = connected();
  const p = env.client.publish("room:a", { text: "hi" });
  const frame = env.ws.last("publish");
  assert.deepEqual({ ...frame, id: 0 }, { type: "publish", id: 0, channel: "room:a", data: { text: "hi" } });
  env.ws.receive({ type: "published", id: frame.id, channel: "room:a", epoch: "e1", offset: 58 });
  assert.deepEqual(await p, { channel: "room:a", epoch: "e1", offset: 58 });
});

test("history and presence: frames and results", async () => {
  const env = connected();
  const h = env.client.history("room:a", { since: { epoch: "e1", offset: 40 }, limit: 50 });
  const hf = env.ws.last("history");
  assert.deepEqual(hf.since, { epoch: "e1", offset: 40 });
  assert.equal(hf.limit, 50);
  env.ws.receive({ type: "history", id: hf.id, channel: "room:a", epoch: "e1", offset: 41, publications: [pub("room:a", 41)] });
  assert.deepEqual(await h, { channel: "room:a", epoch: "e1", offset: 41, publications: [pub("room:a", 41)] });
  env.client.history("room:b");
  assert.deepEqual(Object.keys(env.ws.last("history")).sort(), ["channel", "id", "type"]);
  const pr = env.client.presence("room:a");
  const pf = env.ws.last("presence");
  env.ws.receive({ type: "presence", id: pf.id, channel: "room:a", members: [{ id: 7, username: "ann", connections: 2 }] });
  assert.deepEqual(await pr, { channel: "room:a", members: [{ id: 7, username: "ann", connections: 2 }] });
});

test("an error reply rejects with a RealtimeError carrying the protocol code", async () => {
  const env = connected();
  const p = env.client.publish("user:8", 1);
  env.ws.receive({ type: "error", id: env.ws.last("publish").id, code: "permission_denied", message: "nope" });
  await assert.rejects(p, (e) => failed("permission_denied", true)(e) && e.message === "nope");
});

test("a request made before the connection waits and is sent after welcome (after the resubscribes)", async () => {
  const env = setup();
  env.client.subscribe("room:a");
  const p = env.client.publish("room:a", 1);
  env.client.connect();
  env.clock.advance(5000);
  env.ws.open();
  assert.deepEqual(env.ws.sent.map((f) => f.type), []);
  env.welcome();
  assert.deepEqual(env.ws.sent.map((f) => f.type), ["subscribe", "publish"]);
  env.ws.receive({ type: "published", id: env.ws.last("publish").id, channel: "room:a", epoch: "e1", offset: 1 });
  assert.equal((await p).offset, 1);
});

test("a request that waits too long for the connection fails with not_connected: never sent", async () => {
  const env = setup();
  env.client.connect();
  const p = env.client.publish("room:a", 1);
  env.clock.advance(9_999);
  let settled = false;
  p.then(() => {}, () => {}).finally(() => (settled = true));
  await flush();
  assert.equal(settled, false);
  env.clock.advance(1);
  await assert.rejects(p, (e) => failed("not_connected", false)(e) && /not connected within 10 s/i.test(e.message));
  env.welcome();
  assert.equal(env.ws.frames("publish").length, 0, "a request that failed is not sent later");
});

test("a request that goes out late (after welcome) and gets no reply fails with timeout: sent", async () => {
  const env = setup();
  env.client.connect();
  const p = env.client.publish("room:a", 1);
  env.clock.advance(4_000);
  env.welcome();
  assert.equal(env.ws.frames("publish").length, 1);
  env.clock.advance(6_000); // the timeout counts from the call
  await assert.rejects(p, (e) => failed("timeout", true)(e) && /no reply to publish/i.test(e.message));
});

test("a request sent on a socket already closing waits for the next connection instead", async () => {
  const env = connected();
  env.ws.readyState = 2; // CLOSING: the close event has not come yet
  const p = env.client.publish("room:a", 1);
  assert.equal(env.ws.frames("publish").length, 0);
  env.ws.serverClose(1006);
  env.clock.advance(250);
  env.welcome();
  const frame = env.ws.last("publish");
  env.ws.receive({ type: "published", id: frame.id, channel: "room:a", epoch: "e1", offset: 3 });
  assert.equal((await p).offset, 3);
});

test("no reply within requestTimeout -> timeout; the late reply is dropped", async () => {
  const env = connected();
  const p = env.client.publish("room:a", 1);
  const id = env.ws.last("publish").id;
  env.clock.advance(10_000);
  await assert.rejects(p, failed("timeout", true));
  env.ws.receive({ type: "published", id, channel: "room:a", epoch: "e1", offset: 1 });
  assert.equal(env.client.state, "connected");
  assert.deepEqual(env.errors, []);
});

test("before failing on timeout, data already received gets one more loop turn (centrifuge-js #398)", async () => {
  const env = connected();
  const p = env.client.publish("room:a", 1);
  const id = env.ws.last("publish").id;
  // The reply sits "in the socket" and is read in the same instant the timeout fires.
  env.clock.setTimeout(() => env.ws.receive({ type: "published", id, channel: "room:a", epoch: "e1", offset: 9 }), 10_000);
  env.clock.advance(10_000);
  assert.equal((await p).offset, 9);
});

test("a request in flight when the connection drops fails with disconnected; it is not re-sent", async () => {
  const env = connected();
  const p = env.client.publish("room:a", 1);
  env.ws.serverClose(1006);
  await assert.rejects(p, failed("disconnected", true));
  env.clock.advance(250);
  env.welcome();
  assert.equal(env.ws.frames("publish").length, 0);
});

test("replies of an old connection are dropped, also if they reach us late", async () => {
  const env = connected();
  const old = env.ws;
  const oldOnMessage = old.onmessage;
  const p1 = env.client.publish("room:a", 1);
  const oldId = old.last("publish").id;
  old.serverClose(1006);
  await assert.rejects(p1, code("disconnected"));
  env.clock.advance(250);
  env.welcome();
  const p2 = env.client.publish("room:a", 2);
  const newId = env.ws.last("publish").id;
  assert.notEqual(newId, oldId);
  // A late event of the old socket, even one carrying the new request's id.
  oldOnMessage({ data: JSON.stringify({ type: "published", id: newId, channel: "room:a", epoch: "old", offset: 1 }) });
  // A reply on the new socket with an id it never used.
  env.ws.receive({ type: "published", id: oldId, channel: "room:a", epoch: "old", offset: 1 });
  let settled = false;
  p2.finally(() => (settled = true));
  await flush();
  assert.equal(settled, false);
  env.ws.receive({ type: "published", id: newId, channel: "room:a", epoch: "e1", offset: 2 });
  assert.deepEqual(await p2, { channel: "room:a", epoch: "e1", offset: 2 });
});

test("requests on a closed client fail at once; disconnect() fails the waiting and pending ones", async () => {
  const env = connected();
  const pending = env.client.publish("room:a", 1);
  env.client.disconnect();
  await assert.rejects(pending, failed("closed", true));
  await assert.rejects(env.client.publish("room:a", 2), failed("closed", false));
  const env2 = setup();
  const waiting = env2.client.publish("room:a", 1);
  env2.client.connect();
  env2.client.disconnect();
  await assert.rejects(waiting, failed("closed", false));
});

test("a terminal close by the server fails the waiting requests", async () => {
  const env = setup();
  env.client.connect();
  const waiting = env.client.history("room:a");
  env.ws.open();
  env.ws.disconnect(4503, "forbidden");
  await assert.rejects(waiting, failed("closed", false));
});

test("server error pushes (no id) reach the error event", () => {
  const env = connected();
  env.ws.receive({ type: "error", code: "rate_limited", message: "slow down" });
  assert.equal(env.errors[0].code, "rate_limited");
  assert.equal(env.errors[0].sent, undefined, "not a request's error");
  assert.equal(env.client.state, "connected");
});
