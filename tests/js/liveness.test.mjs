// Heartbeat, wall-clock liveness, and the browser lifecycle (online, offline, visibilitychange).

import { test } from "node:test";
import assert from "node:assert/strict";
import { setup } from "./fake.mjs";

function connected(options) {
  const env = setup(options);
  env.client.connect();
  env.welcome({ heartbeat: 25 }); // deadline: 25 s + heartbeatTimeout 10 s, plus 1 s grace
  env.states.length = 0;
  return env;
}

test("ping -> pong", () => {
  const env = connected();
  env.ws.receive({ type: "ping" });
  assert.deepEqual(env.ws.last(), { type: "pong" });
});

test("no frame for heartbeat + heartbeatTimeout -> dead: closed locally with 4004 (resumable) and reconnect", () => {
  const env = connected();
  const ws = env.ws;
  env.clock.advance(35_999);
  assert.equal(env.client.state, "connected", "35 s deadline, then a 1 s grace");
  env.clock.advance(1);
  assert.deepEqual(ws.closedWith, { code: 4004, reason: "no_ping" });
  assert.deepEqual(env.states[0], { state: "disconnected", previous: "connected", code: 4004, reason: "no_ping", delayMs: 250 });
  env.clock.advance(250);
  assert.equal(env.WS.instances.length, 2);
  assert.equal(env.ws.resumeRequest.resume, "s_1");
});

test("any frame keeps the connection alive", () => {
  const env = connected();
  const ws = env.ws;
  for (let i = 0; i < 10; i++) {
    env.clock.advance(25_000);
    ws.receive({ type: "ping" });
  }
  assert.equal(env.client.state, "connected");
  assert.equal(env.WS.instances.length, 1);
});

test("the check is against the wall clock: a frame just before the timer moves the deadline", () => {
  const env = connected();
  env.clock.advance(30_000);
  env.ws.receive({ type: "message", channel: "x:y", epoch: "e", offset: 1 });
  env.clock.advance(6_000); // the timer fired at 35 s, saw 5 s left, re-armed
  assert.equal(env.client.state, "connected");
  env.clock.advance(30_000); // 30 + 35 + 1 grace = 66 s
  assert.equal(env.client.state, "disconnected");
});

test("a throttled timer that fires late still detects the dead socket", () => {
  const env = connected();
  env.clock.jump(300_000); // background tab: no timer ran for 5 minutes
  env.clock.advance(0); // the overdue timer finally runs
  assert.equal(env.client.state, "connected", "one grace turn first");
  env.clock.advance(1000);
  assert.equal(env.states[0].reason, "no_ping");
});

test("after a suspend, a frame read during the grace saves a healthy connection (centrifuge-js #423)", () => {
  const env = connected();
  env.clock.jump(100_000);
  env.clock.advance(0); // the late timer: suspect
  env.ws.receive({ type: "ping" }); // the frame that was queued behind it
  env.clock.advance(1000);
  assert.equal(env.client.state, "connected");
  assert.equal(env.WS.instances.length, 1);
});

test("online -> the socket is treated as dead and replaced at once (no backoff)", () => {
  const env = connected();
  const ws = env.ws;
  env.win.fire("online");
  assert.deepEqual(ws.closedWith, { code: 4004, reason: "online" });
  assert.deepEqual(env.states.slice(0, 2), [
    { state: "disconnected", previous: "connected", code: 4004, reason: "online", delayMs: 0 },
    { state: "connecting", previous: "disconnected", code: 4004, reason: "online" },
  ]);
  assert.equal(env.WS.instances.length, 2);
});

test("online while waiting out a backoff -> connect now", () => {
  const env = connected({ random: () => 1, minDelay: 5000 });
  env.ws.serverClose(1006);
  assert.equal(env.states.at(-1).delayMs, 5000);
  env.win.fire("online");
  assert.equal(env.client.state, "connecting");
  assert.equal(env.WS.instances.length, 2);
  env.clock.advance(5000);
  assert.equal(env.WS.instances.length, 2, "the old backoff timer was cancelled");
});

test("offline forces nothing, but liveness keeps running", () => {
  const env = connected();
  env.win.fire("offline");
  assert.equal(env.client.state, "connected");
  assert.equal(env.ws.closedWith, null);
  env.clock.advance(36_000);
  assert.equal(env.client.state, "disconnected");
  assert.equal(env.states[0].reason, "no_ping");
});

test("visible while waiting out a backoff -> reconnect at once", () => {
  const env = connected({ random: () => 1, minDelay: 20_000 });
  env.ws.serverClose(1001);
  env.doc.visibilityState = "hidden";
  env.doc.fire("visibilitychange");
  assert.equal(env.client.state, "disconnected", "hidden: nothing");
  env.doc.visibilityState = "visible";
  env.doc.fire("visibilitychange");
  assert.equal(env.client.state, "connecting");
  assert.equal(env.WS.instances.length, 2);
});

test("visible with the wall-clock deadline passed -> reconnect at once, after one loop turn", () => {
  const env = connected();
  const ws = env.ws;
  env.clock.jump(120_000); // hidden for two minutes, no timer ran
  env.doc.fire("visibilitychange");
  assert.equal(env.client.state, "connected", "frames already received get one turn first");
  env.clock.advance(0);
  assert.deepEqual(ws.closedWith, { code: 4004, reason: "no_ping" });
  assert.equal(env.states[0].delayMs, 0);
  assert.equal(env.WS.instances.length, 2);
});

test("visible with a live socket -> nothing", () => {
  const env = connected();
  env.clock.advance(10_000);
  env.doc.fire("visibilitychange");
  env.clock.advance(0);
  assert.equal(env.client.state, "connected");
  assert.equal(env.WS.instances.length, 1);
});

test("disconnect() removes every listener it added; lifecycle events do nothing afterwards", () => {
  const env = setup();
  assert.equal(env.win.listeners + env.doc.listeners, 0, "none before connect()");
  env.client.connect();
  assert.equal(env.win.listeners, 1);
  assert.equal(env.doc.listeners, 1);
  env.welcome();
  env.client.disconnect();
  assert.equal(env.win.listeners, 0);
  assert.equal(env.doc.listeners, 0);
  env.win.fire("online");
  env.doc.fire("visibilitychange");
  env.clock.advance(60_000);
  assert.equal(env.WS.instances.length, 1);
  assert.equal(env.client.state, "closed");
  assert.equal(env.clock.pending, 0, "no timer left behind");
});

test("a terminal close by the server removes the listeners too; connect() adds them once again", () => {
  const env = connected();
  env.ws.disconnect(4503, "forbidden");
  assert.equal(env.win.listeners + env.doc.listeners, 0);
  env.client.connect();
  env.client.connect();
  assert.equal(env.win.listeners + env.doc.listeners, 2);
});

test("welcome heartbeat 0 or absent: no liveness timer", () => {
  const env = setup();
  env.client.connect();
  env.welcome({ heartbeat: 0 });
  env.clock.advance(600_000);
  assert.equal(env.client.state, "connected");
});

test("no welcome within requestTimeout -> connect_timeout, reconnect", () => {
  const env = setup();
  env.client.connect();
  env.ws.open();
  env.clock.advance(10_000);
  assert.deepEqual(env.WS.instances[0].closedWith, { code: 4004, reason: "connect_timeout" });
  assert.equal(env.client.state, "disconnected");
});
