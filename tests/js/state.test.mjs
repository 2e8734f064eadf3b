// The client state machine, its events, and the close-code policy (PROTOCOL §7, §10).

import { test } from "node:test";
import assert from "node:assert/strict";
import { Client, RealtimeError } from "../../realtime/static/realtime/realtime.js";
import { setup, flush, silentLogger } from "./fake.mjs";

test("disconnected -> connecting -> connected, one event per change", async () => {
  const env = setup();
  assert.equal(env.client.state, "disconnected");
  const done = env.client.connect();
  assert.equal(env.client.state, "connecting");
  assert.equal(env.WS.instances.length, 1);
  env.welcome();
  assert.deepEqual(await done, { session: "s_1", user: { id: 7, username: "ann" }, resumed: false });
  assert.equal(env.client.state, "connected");
  assert.equal(env.client.session, "s_1");
  assert.deepEqual(env.client.user, { id: 7, username: "ann" });
  assert.deepEqual(env.states, [
    { state: "connecting", previous: "disconnected", code: null, reason: "connect" },
    { state: "connected", previous: "connecting", code: null, reason: "welcome", resumed: false },
  ]);
});

test("the socket opening is not `connected`: only welcome is", () => {
  const env = setup();
  env.client.connect();
  env.ws.open();
  assert.equal(env.client.state, "connecting");
  assert.equal(env.ws.bearer, "tok");
});

test("the token never goes into the URL", () => {
  const env = setup({ token: "secret-token" });
  env.client.connect();
  assert.equal(env.ws.url, "ws://test/ws/");
  assert.ok(!env.ws.url.includes("secret"));
});

test("disconnect(): closed with 1000, the socket closed with 1000, connect() rejects if pending", async () => {
  const env = setup();
  const p = env.client.connect();
  const ws = env.ws;
  env.client.disconnect();
  await assert.rejects(p, (e) => e instanceof RealtimeError && e.code === "closed");
  assert.equal(env.client.state, "closed");
  assert.deepEqual(ws.closedWith, { code: 1000, reason: "client" });
  assert.deepEqual(env.states.at(-1), { state: "closed", previous: "connecting", code: 1000, reason: "client" });
  env.clock.advance(60_000);
  assert.equal(env.WS.instances.length, 1, "no reconnect after disconnect()");
});

test("connect() again after closed starts over; the session is not resumed", () => {
  const env = setup();
  env.client.connect();
  env.welcome();
  env.client.disconnect();
  assert.equal(env.client.session, null);
  env.client.connect();
  env.ws.open();
  assert.equal(env.ws.resumeRequest.resume, undefined);
});

/** Connect, welcome, then the server closes with `code`; what happens next? */
function closeWith(code, options) {
  const env = setup(options);
  env.client.connect();
  env.welcome();
  env.states.length = 0;
  env.ws.disconnect(code, `reason_${code}`);
  return env;
}

for (const code of [1000, 4500, 4503, 4509, 4529, 4999]) {
  test(`close ${code}: stop (closed), no reconnect`, () => {
    const env = closeWith(code);
    assert.deepEqual(env.states, [{ state: "closed", previous: "connected", code, reason: `reason_${code}` }]);
    env.clock.advance(120_000);
    assert.equal(env.WS.instances.length, 1);
  });
}

for (const code of [1001, 1005, 1006, 1011, 3000, 3999, 4000, 4004, 4008, 4011, 4013, 4499]) {
  test(`close ${code}: reconnect after a backoff delay`, () => {
    const env = closeWith(code);
    assert.equal(env.client.state, "disconnected");
    const ev = env.states[0];
    assert.equal(ev.code, code);
    assert.equal(ev.previous, "connected");
    assert.equal(ev.delayMs, 250, "random 0.5 * min(20000, 500 * 2^0)");
    env.clock.advance(249);
    assert.equal(env.WS.instances.length, 1);
    env.clock.advance(1);
    assert.equal(env.WS.instances.length, 2);
    assert.deepEqual(env.states[1], { state: "connecting", previous: "disconnected", code, reason: `reason_${code}` });
  });
}

test("close without a disconnect frame (1006) reconnects; the disconnect frame wins over the close code", () => {
  const env = setup();
  env.client.connect();
  env.welcome();
  env.ws.receive({ type: "disconnect", code: 4503, reason: "forbidden", reconnect: false });
  env.ws.serverClose(1006); // the close frame got lost
  assert.equal(env.client.state, "closed");
  assert.equal(env.states.at(-1).code, 4503);
});

test("4009 asks the provider for a fresh token before reconnecting", async () => {
  let n = 0;
  const env = setup({ token: undefined, getToken: async () => `t${++n}` });
  env.client.connect();
  await flush();
  env.welcome();
  assert.equal(env.WS.instances[0].bearer, "t1");
  env.ws.disconnect(4009, "token_expired");
  assert.equal(env.client.state, "disconnected");
  env.clock.advance(250);
  assert.equal(n, 1, "provider is called once the attempt starts");
  await flush();
  assert.equal(n, 2);
  assert.equal(env.ws.bearer, "t2");
});

test("4009 with a fixed token (nothing fresh to get): stop", () => {
  const env = closeWith(4009);
  assert.equal(env.client.state, "closed");
});

test("4501: the provider is asked once more; the same token -> closed", async () => {
  const env = setup({ token: undefined, getToken: async () => "same" });
  env.client.connect();
  await flush();
  env.welcome();
  env.ws.disconnect(4501, "unauthorized");
  assert.equal(env.client.state, "disconnected");
  env.clock.advance(250);
  await flush();
  assert.equal(env.client.state, "closed");
  assert.equal(env.states.at(-1).code, 4501);
  assert.equal(env.WS.instances.length, 1, "no socket with the refused token");
});

test("4501: a different token from the provider -> reconnect with it", async () => {
  let n = 0;
  const env = setup({ token: undefined, getToken: async () => `t${++n}` });
  env.client.connect();
  await flush();
  env.ws.open();
  env.ws.disconnect(4501, "unauthorized"); // the handshake's token was refused
  env.clock.advance(250);
  await flush();
  assert.equal(env.WS.instances.length, 2);
  assert.equal(env.ws.bearer, "t2");
});

test("4501 with a fixed token: stop at once", () => {
  const env = closeWith(4501);
  assert.equal(env.client.state, "closed");
});

test("a provider that returns no token, or throws unauthorized, closes (never an empty token)", async () => {
  for (const getToken of [async () => "", async () => null, async () => { throw new RealtimeError("unauthorized"); }]) {
    const env = setup({ token: undefined, getToken });
    const p = env.client.connect();
    await flush();
    assert.equal(env.client.state, "closed");
    assert.equal(env.WS.instances.length, 0);
    await assert.rejects(p);
  }
});

test("a provider that fails otherwise: error event, retry with backoff", async () => {
  let n = 0;
  const env = setup({ token: undefined, getToken: async () => { if (++n === 1) throw new Error("503"); return "ok"; } });
  env.client.connect();
  await flush();
  assert.equal(env.client.state, "disconnected");
  assert.equal(env.errors[0].code, "token");
  assert.equal(env.errors[0].cause.message, "503");
  env.clock.advance(250);
  await flush();
  env.welcome();
  assert.equal(env.client.state, "connected");
});

test("the provider is not called on a plain reconnect while the token is fresh", async () => {
  let n = 0;
  const env = setup({ token: undefined, getToken: async () => { n++; return "opaque"; } });
  env.client.connect();
  await flush();
  env.welcome();
  env.ws.serverClose(1006);
  env.clock.advance(250);
  await flush();
  assert.equal(n, 1);
  assert.equal(env.WS.instances.length, 2);
});

test("a token at (or within seconds of) its exp is replaced before dialling", async () => {
  const { jwt } = await import("./fake.mjs");
  let n = 0;
  const env = setup({ token: undefined, getToken: async () => jwt(env.clock.now() / 1000 + (n++ === 0 ? 60 : 300), `j${n}`) });
  env.client.connect();
  await flush();
  env.welcome();
  env.clock.advance(58_000); // 2 s before exp
  env.ws.serverClose(1006);
  env.clock.advance(250);
  await flush();
  assert.equal(n, 2);
});

test("several URLs: round robin, the first attempt uses the first", () => {
  const env = setup({}, ["ws://a/ws/", "ws://b/ws/", "ws://c/ws/"]);
  env.client.connect();
  const urls = () => env.WS.instances.map((w) => w.url);
  assert.deepEqual(urls(), ["ws://a/ws/"]);
  for (let i = 0; i < 3; i++) {
    env.ws.serverClose(1006);
    env.clock.advance(env.states.at(-1).delayMs);
  }
  assert.deepEqual(urls(), ["ws://a/ws/", "ws://b/ws/", "ws://c/ws/", "ws://a/ws/"]);
});

test("relative URLs resolve against the page (ws: for http:, wss: for https:)", () => {
  const env = setup({ window: { location: { href: "https://example.org/demo/" } } }, "/ws/");
  env.client.connect();
  assert.equal(env.ws.url, "wss://example.org/ws/");
});

test("a throwing handler does not break the read loop; it is reported", () => {
  const env = setup();
  env.client.on("state", () => { throw new Error("boom"); });
  env.client.connect();
  env.welcome();
  assert.equal(env.client.state, "connected");
  const sub = env.client.subscribe("room:a");
  const got = [];
  sub.on("publication", (p) => { got.push(p.offset); if (p.offset === 1) throw new Error("handler"); });
  env.subscribed("room:a", { offset: 0 });
  env.ws.receive({ type: "message", channel: "room:a", epoch: "e1", offset: 1, data: 1, user: null, ts: 0 });
  env.ws.receive({ type: "message", channel: "room:a", epoch: "e1", offset: 2, data: 2, user: null, ts: 0 });
  env.ws.receive({ type: "ping" });
  assert.deepEqual(got, [1, 2]);
  assert.deepEqual(env.ws.last(), { type: "pong" });
  assert.ok(env.errors.some((e) => e.code === "handler" && e.cause.message === "boom"));
  assert.ok(env.errors.some((e) => e.code === "handler" && e.cause.message === "handler"));
});

test("a throwing `error` handler is logged, not looped", () => {
  const logged = [];
  const env = setup({ logger: { ...silentLogger, error: (...a) => logged.push(a) } });
  env.client.on("error", () => { throw new Error("again"); });
  env.client.connect();
  env.welcome();
  env.ws.receive("not json");
  env.ws.receive({ type: "ping" });
  assert.equal(logged.length, 1);
  assert.deepEqual(env.ws.last(), { type: "pong" });
});

test("bad frames are reported and skipped", () => {
  const env = setup();
  env.client.connect();
  env.welcome();
  env.ws.receive("[1,2]");
  env.ws.receive("{bad");
  assert.deepEqual(env.errors.map((e) => e.code), ["bad_frame", "bad_frame"]);
  assert.equal(env.client.state, "connected");
});

test("a state handler that calls disconnect() on connecting stops the attempt", () => {
  const env = setup();
  env.client.on("state", (e) => { if (e.state === "connecting") env.client.disconnect(); });
  env.client.connect().catch(() => {});
  assert.equal(env.client.state, "closed");
  assert.equal(env.WS.instances.length, 0);
});

test("cookie mode (no token, no provider): no auth frame, the pushed welcome connects; resume goes in the query", () => {
  const env = setup({ token: undefined });
  env.client.connect();
  env.ws.open();
  assert.deepEqual(env.ws.sent, []);
  env.ws.receive({ type: "welcome", session: "s_9", user: { id: 1, username: "u" }, expires_at: null, heartbeat: 25, resume_window: 120, resumed: false });
  assert.equal(env.client.state, "connected");
  env.client.subscribe("room:a");
  env.subscribed("room:a", { offset: 4 });
  env.ws.serverClose(1001);
  env.clock.advance(250);
  const url = new URL(env.ws.url);
  assert.equal(url.searchParams.get("resume"), "s_9");
  assert.deepEqual(JSON.parse(url.searchParams.get("positions")), { "room:a": { epoch: "e1", offset: 4 } });
  assert.equal(url.searchParams.get("token"), null);
});

test("Client is constructible without injected browser globals (defaults to globalThis)", () => {
  const c = new Client("ws://x/ws/", { token: "t", window: null, document: null });
  assert.equal(c.state, "disconnected");
});
