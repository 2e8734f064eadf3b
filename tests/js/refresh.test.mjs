// In-band token refresh on `expiring`: retries until expires_at, tied to its connection.

import { test } from "node:test";
import assert from "node:assert/strict";
import { setup, flush } from "./fake.mjs";

/** A provider whose answers the test scripts: each call gets the next item (a string or an Error). */
function scripted(...answers) {
  const calls = [];
  const fn = async () => {
    calls.push(fn.clock?.now());
    const a = answers.length > 1 ? answers.shift() : answers[0];
    if (a instanceof Error) throw a;
    return typeof a === "function" ? a() : a;
  };
  fn.calls = calls;
  return fn;
}

async function connected(getToken) {
  const env = setup({ token: undefined, getToken });
  getToken.clock = env.clock;
  env.client.connect();
  await flush();
  env.welcome({ expires_at: env.clock.now() / 1000 + 30 });
  getToken.calls.length = 0;
  return env;
}

test("expiring -> provider -> refresh frame -> refreshed: done", async () => {
  const getToken = scripted("t1", "t2");
  const env = await connected(getToken);
  const expiresAt = env.clock.now() / 1000 + 30;
  env.ws.receive({ type: "expiring", expires_at: expiresAt });
  await flush();
  const frame = env.ws.last("refresh");
  assert.equal(frame.token, "t2");
  assert.equal(typeof frame.id, "number");
  env.ws.receive({ type: "refreshed", id: frame.id, expires_at: expiresAt + 300 });
  env.clock.advance(20_000); // (under the 35 s liveness deadline: no pings in this test)
  await flush();
  assert.equal(getToken.calls.length, 1);
  assert.equal(env.ws.frames("refresh").length, 1);
  assert.equal(env.errors.length, 0);
});

test("a second expiring while a refresh runs does not start a second chain", async () => {
  let release;
  const getToken = scripted("t1", () => new Promise((r) => (release = r)));
  const env = await connected(getToken);
  env.ws.receive({ type: "expiring", expires_at: env.clock.now() / 1000 + 30 });
  env.ws.receive({ type: "expiring", expires_at: env.clock.now() / 1000 + 30 });
  await flush();
  release("t2");
  await flush();
  assert.equal(getToken.calls.length, 1);
  assert.equal(env.ws.frames("refresh").length, 1);
});

test("a failing provider is retried with jitter until expires_at, then given up", async () => {
  const getToken = scripted("t1", new Error("503"));
  const env = await connected(getToken);
  const start = env.clock.now();
  env.ws.receive({ type: "expiring", expires_at: start / 1000 + 30 });
  const ws = env.ws;
  for (let i = 0; i < 200; i++) {
    await flush();
    env.clock.advance(250);
    ws.receive({ type: "ping" }); // keep the connection alive past expires_at: only the chain is under test
  }
  assert.equal(env.ws, ws);
  const at = getToken.calls.map((t) => t - start);
  // random 0.5: delays 250, 500, 1000, 2000, 4000, 8000, 10000 (cap 20000 * 0.5), then 35750 > 30000.
  assert.deepEqual(at, [0, 250, 750, 1750, 3750, 7750, 15750, 25750]);
  assert.ok(env.errors.every((e) => e.code === "refresh"));
  assert.equal(env.errors.length, 8);
});

test("an error reply to refresh is retried, then succeeds", async () => {
  const getToken = scripted("t1", "bad", "good");
  const env = await connected(getToken);
  env.ws.receive({ type: "expiring", expires_at: env.clock.now() / 1000 + 30 });
  await flush();
  const first = env.ws.last("refresh");
  env.ws.receive({ type: "error", id: first.id, code: "unauthorized", message: "invalid" });
  assert.equal(env.errors[0].code, "refresh");
  assert.equal(env.errors[0].cause.code, "unauthorized");
  env.clock.advance(250);
  await flush();
  const second = env.ws.last("refresh");
  assert.equal(second.token, "good");
  env.ws.receive({ type: "refreshed", id: second.id, expires_at: 0 });
  env.clock.advance(20_000);
  await flush();
  assert.equal(env.ws.frames("refresh").length, 2);
});

test("a refresh reply timeout counts as a failure and is retried", async () => {
  const getToken = scripted("t1", "t2");
  const env = await connected(getToken);
  env.ws.receive({ type: "expiring", expires_at: env.clock.now() / 1000 + 30 });
  await flush();
  env.clock.advance(10_000); // requestTimeout, plus the extra loop turn
  assert.equal(env.errors[0].cause.code, "timeout");
  env.clock.advance(250);
  await flush();
  assert.equal(env.ws.frames("refresh").length, 2);
});

test("a refresh whose provider finishes after a reconnect is dropped (not sent in the new connection)", async () => {
  let release;
  const getToken = scripted("t1", () => new Promise((r) => (release = r)), "t3");
  const env = await connected(getToken);
  const old = env.ws;
  old.receive({ type: "expiring", expires_at: env.clock.now() / 1000 + 30 });
  await flush();
  old.serverClose(1006);
  env.clock.advance(250);
  await flush();
  env.welcome({ resumed: true });
  release("late");
  await flush();
  assert.equal(env.ws.frames("refresh").length, 0, "not in the new connection");
  assert.equal(old.frames("refresh").length, 0, "nor in the old one");
  // The new connection's own expiring starts its own chain.
  env.ws.receive({ type: "expiring", expires_at: env.clock.now() / 1000 + 30 });
  await flush();
  assert.equal(env.ws.frames("refresh").length, 1);
});

test("a refresh retry scheduled in an old connection does not run in the new one", async () => {
  const getToken = scripted("t1", new Error("503"));
  const env = await connected(getToken);
  env.ws.receive({ type: "expiring", expires_at: env.clock.now() / 1000 + 30 });
  await flush();
  assert.equal(getToken.calls.length, 1); // failed; a retry is due in 250 ms
  env.ws.serverClose(1006);
  env.clock.advance(250); // the reconnect, and where the retry would have fired
  await flush();
  env.welcome();
  env.clock.advance(60_000);
  await flush();
  assert.equal(getToken.calls.length, 1);
});

test("a provider with nothing (logged out) stops the refresh chain", async () => {
  const getToken = scripted("t1", "");
  const env = await connected(getToken);
  env.ws.receive({ type: "expiring", expires_at: env.clock.now() / 1000 + 30 });
  await flush();
  env.clock.advance(30_000);
  await flush();
  assert.equal(getToken.calls.length, 1);
  assert.equal(env.ws.frames("refresh").length, 0);
});

test("a fixed token cannot refresh: expiring changes nothing (the 4009 close ends it)", async () => {
  const env = setup();
  env.client.connect();
  env.welcome();
  env.ws.receive({ type: "expiring", expires_at: env.clock.now() / 1000 + 30 });
  await flush();
  assert.equal(env.ws.frames("refresh").length, 0);
  assert.equal(env.client.state, "connected");
});
