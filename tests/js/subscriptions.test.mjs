// Subscriptions: positions, resume, recovery, dedupe, gaps, server removals, stale replies.

import { test } from "node:test";
import assert from "node:assert/strict";
import { setup, pub } from "./fake.mjs";

/** A connected client with `room:a` subscribed at offset `offset`; `got` collects publications. */
function subscribedEnv(offset = 5, options) {
  const env = setup(options);
  env.client.connect();
  env.welcome();
  const sub = env.client.subscribe("room:a");
  const got = [];
  const events = [];
  sub.on("publication", (p) => got.push(p));
  sub.on("subscribed", (e) => events.push(e));
  env.subscribed("room:a", { offset });
  return { ...env, env, sub, got, events };
}

const offsets = (got) => got.map((p) => p.offset);

test("subscribe before connect is sent at welcome; the same object for the same channel", () => {
  const env = setup();
  const sub = env.client.subscribe("room:a");
  assert.equal(env.client.subscribe("room:a"), sub);
  assert.equal(sub.state, "subscribing");
  env.client.connect();
  env.welcome();
  assert.deepEqual(env.ws.frames("subscribe").map(({ id, ...f }) => f), [{ type: "subscribe", channel: "room:a" }]);
  const events = [];
  sub.on("subscribed", (e) => events.push(e));
  env.subscribed("room:a", { epoch: "e1", offset: 3 });
  assert.equal(sub.state, "subscribed");
  assert.deepEqual(sub.position, { epoch: "e1", offset: 3 });
  assert.deepEqual(events, [{ channel: "room:a", epoch: "e1", offset: 3, recovering: false, recovered: false, publications: 0 }]);
});

test("live publications: shape, order; the position is stored before the handler runs", () => {
  const { env, sub, got } = subscribedEnv(5);
  const seen = [];
  sub.on("publication", (p) => seen.push(sub.position.offset === p.offset));
  env.ws.receive({ type: "message", ...pub("room:a", 6) });
  env.ws.receive({ type: "message", ...pub("room:a", 7) });
  assert.deepEqual(got[0], { channel: "room:a", epoch: "e1", offset: 6, data: { n: 6 }, user: 7, ts: got[0].ts });
  assert.equal("recovered" in got[0], false);
  assert.deepEqual(offsets(got), [6, 7]);
  assert.deepEqual(seen, [true, true]);
});

test("dedupe: offsets at or below the last one are dropped", () => {
  const { env, got } = subscribedEnv(5);
  for (const o of [5, 4, 6, 6, 5, 7]) env.ws.receive({ type: "message", ...pub("room:a", o) });
  assert.deepEqual(offsets(got), [6, 7]);
  assert.equal(env.ws.frames("subscribe").length, 1, "a duplicate is not a gap");
});

test("a gap -> unsubscribe, then subscribe with recover from the last position; replay marked recovered", () => {
  const { env, sub, got, events } = subscribedEnv(5);
  const reasons = [];
  sub.on("subscribing", (e) => reasons.push(e.reason));
  env.ws.receive({ type: "message", ...pub("room:a", 6) });
  env.ws.receive({ type: "message", ...pub("room:a", 8) }); // 7 is missing
  assert.deepEqual(offsets(got), [6]);
  assert.equal(sub.state, "subscribing");
  assert.deepEqual(reasons, ["gap"]);
  const tail = env.ws.sent.slice(-2).map(({ id, ...f }) => f);
  assert.deepEqual(tail, [
    { type: "unsubscribe", channel: "room:a" },
    { type: "subscribe", channel: "room:a", recover: { epoch: "e1", offset: 6 } },
  ]);
  env.ws.receive({ type: "message", ...pub("room:a", 9) }); // in flight while resubscribing: dropped
  env.subscribed("room:a", { offset: 9, recovered: true, publications: [pub("room:a", 6), pub("room:a", 7), pub("room:a", 8), pub("room:a", 9)] });
  assert.deepEqual(offsets(got), [6, 7, 8, 9]);
  assert.deepEqual(got.slice(1).map((p) => p.recovered), [true, true, true]);
  assert.deepEqual(events.at(-1), { channel: "room:a", epoch: "e1", offset: 9, recovering: true, recovered: true, publications: 4 });
  env.ws.receive({ type: "message", ...pub("room:a", 10) });
  assert.deepEqual(offsets(got).at(-1), 10);
  assert.equal(got.at(-1).recovered, undefined);
});

test("an epoch change on a live message -> resubscribe with recover from the old position", () => {
  const { env, sub, got, events } = subscribedEnv(5);
  env.ws.receive({ type: "message", ...pub("room:a", 1, "e2") });
  assert.deepEqual(got, []);
  assert.deepEqual(env.ws.last("subscribe").recover, { epoch: "e1", offset: 5 });
  assert.equal(env.ws.sent.at(-2).type, "unsubscribe");
  env.subscribed("room:a", { epoch: "e2", offset: 1, recovered: false, publications: [pub("room:a", 1, "e2")] });
  assert.equal(events.at(-1).recovering, true);
  assert.equal(events.at(-1).recovered, false, "the app must reload");
  assert.deepEqual(sub.position, { epoch: "e2", offset: 1 });
  assert.deepEqual(got.map((p) => [p.epoch, p.offset]), [["e2", 1]]);
});

test("a replay cut short (recovered false): live messages continue from the reply's offset", () => {
  const { env, sub, got } = subscribedEnv(5);
  env.ws.receive({ type: "message", ...pub("room:a", 9) });
  env.subscribed("room:a", { offset: 20, recovered: false, publications: [pub("room:a", 6), pub("room:a", 7)] });
  assert.deepEqual(sub.position, { epoch: "e1", offset: 20 });
  env.ws.receive({ type: "message", ...pub("room:a", 21) });
  assert.deepEqual(offsets(got), [6, 7, 21]);
});

test("replayed publications go through the same dedupe", () => {
  const { env, got } = subscribedEnv(5);
  env.ws.receive({ type: "message", ...pub("room:a", 7) }); // gap
  env.subscribed("room:a", { offset: 7, recovered: true, publications: [pub("room:a", 4), pub("room:a", 5), pub("room:a", 6), pub("room:a", 6), pub("room:a", 7)] });
  assert.deepEqual(offsets(got), [6, 7]);
});

test("reconnect: resume + positions are asked for; resumed -> pushed subscribed; unpositioned ones subscribe", () => {
  const env = setup();
  env.client.connect();
  env.welcome({ session: "s_42" });
  const a = env.client.subscribe("room:a");
  const b = env.client.subscribe("room:b"); // its subscribe never gets a reply: no position
  const gone = env.client.subscribe("room:gone");
  env.subscribed("room:a", { offset: 5 });
  env.subscribed("room:gone", { offset: 1 });
  gone.unsubscribe();
  const got = [];
  const events = [];
  a.on("publication", (p) => got.push(p));
  a.on("subscribed", (e) => events.push(e));
  env.ws.serverClose(1006);
  assert.equal(a.state, "subscribing");
  env.clock.advance(250);
  env.ws.open();
  const asked = env.ws.resumeRequest;
  assert.equal(asked.resume, "s_42");
  assert.deepEqual(asked.positions, { "room:a": { epoch: "e1", offset: 5 } });
  env.welcome({ session: "s_42", resumed: true });
  assert.deepEqual(env.states.at(-1).resumed, true);
  assert.deepEqual(env.ws.frames("subscribe").map((f) => f.channel), ["room:b"], "room:a waits for the server's push");
  env.ws.receive({ type: "subscribed", channel: "room:a", epoch: "e1", offset: 7, recovered: true, publications: [pub("room:a", 6), pub("room:a", 7)] });
  assert.equal(a.state, "subscribed");
  assert.deepEqual(offsets(got), [6, 7]);
  assert.ok(got.every((p) => p.recovered === true));
  assert.deepEqual(events, [{ channel: "room:a", epoch: "e1", offset: 7, recovering: true, recovered: true, publications: 2 }]);
  // The server had room:b on record too: its push arrives, then our subscribe is already_subscribed (= success).
  env.ws.receive({ type: "subscribed", channel: "room:b", epoch: "e1", offset: 3, recovered: true, publications: [] });
  const bReq = env.ws.last("subscribe");
  env.ws.receive({ type: "error", id: bReq.id, code: "already_subscribed", message: "" });
  assert.equal(b.state, "subscribed");
  assert.deepEqual(b.position, { epoch: "e1", offset: 3 });
  // A restored channel the client no longer wants: unsubscribe.
  env.ws.receive({ type: "subscribed", channel: "room:gone", epoch: "e1", offset: 1, recovered: true, publications: [] });
  assert.deepEqual(env.ws.sent.at(-1).type, "unsubscribe");
  assert.equal(env.ws.sent.at(-1).channel, "room:gone");
  assert.equal(gone.state, "unsubscribed");
  assert.equal(env.ws.frames("subscribe").length, 1);
});

test("already_subscribed with no push before it: resync (unsubscribe + subscribe with recover)", () => {
  const { env, sub } = subscribedEnv(5);
  env.ws.serverClose(1006);
  env.clock.advance(250);
  env.welcome({ resumed: false });
  const req = env.ws.last("subscribe");
  env.ws.receive({ type: "error", id: req.id, code: "already_subscribed", message: "" });
  assert.equal(sub.state, "subscribing");
  assert.deepEqual(env.ws.sent.slice(-2).map((f) => [f.type, f.recover]), [["unsubscribe", undefined], ["subscribe", { epoch: "e1", offset: 5 }]]);
});

test("resumed: false -> every channel is subscribed again with recover from its position", () => {
  const { env, sub, events } = subscribedEnv(5);
  env.ws.serverClose(1011);
  env.clock.advance(250);
  env.welcome({ session: "s_new", resumed: false });
  assert.equal(env.client.session, "s_new");
  const req = env.ws.last("subscribe");
  assert.deepEqual(req.recover, { epoch: "e1", offset: 5 });
  env.subscribed("room:a", { offset: 5, recovered: true });
  assert.equal(sub.state, "subscribed");
  assert.deepEqual(events.at(-1), { channel: "room:a", epoch: "e1", offset: 5, recovering: true, recovered: true, publications: 0 });
});

test("pushed unsubscribed insufficient_state -> subscribe with recover (no unsubscribe)", () => {
  const { env, sub } = subscribedEnv(5);
  env.ws.receive({ type: "message", ...pub("room:a", 6) });
  const before = env.ws.sent.length;
  env.ws.receive({ type: "unsubscribed", channel: "room:a", reason: "insufficient_state" });
  assert.equal(sub.state, "subscribing");
  assert.deepEqual(env.ws.sent.slice(before).map(({ id, ...f }) => f), [{ type: "subscribe", channel: "room:a", recover: { epoch: "e1", offset: 6 } }]);
});

test("pushed unsubscribed removed -> terminal for that subscription", () => {
  const { env, sub, got } = subscribedEnv(5);
  const ends = [];
  sub.on("unsubscribed", (e) => ends.push(e));
  env.ws.receive({ type: "unsubscribed", channel: "room:a", reason: "removed" });
  assert.equal(sub.state, "unsubscribed");
  assert.equal(sub.position, null);
  assert.deepEqual(ends, [{ channel: "room:a", reason: "removed" }]);
  env.ws.receive({ type: "message", ...pub("room:a", 6) });
  assert.deepEqual(got, []);
  env.ws.serverClose(1006);
  env.clock.advance(250);
  env.ws.open();
  assert.equal(env.ws.resumeRequest.positions, undefined);
  env.welcome({ resumed: false });
  assert.equal(env.ws.frames("subscribe").length, 0, "not resubscribed");
  assert.equal(env.client.subscribe("room:a"), sub, "subscribing again reuses the object");
  assert.equal(sub.state, "subscribing");
});

test("unsubscribe then subscribe while a reply is in flight: the stale reply is dropped", () => {
  const env = setup();
  env.client.connect();
  env.welcome();
  const sub = env.client.subscribe("room:a");
  const first = env.ws.last("subscribe");
  sub.unsubscribe();
  env.client.subscribe("room:a");
  const second = env.ws.last("subscribe");
  assert.notEqual(first.id, second.id);
  assert.deepEqual(env.ws.sent.slice(-3).map((f) => f.type), ["subscribe", "unsubscribe", "subscribe"]);
  const events = [];
  sub.on("subscribed", (e) => events.push(e.offset));
  env.ws.receive({ type: "subscribed", id: first.id, channel: "room:a", epoch: "e1", offset: 1, recovered: false, publications: [] });
  assert.equal(sub.state, "subscribing");
  env.ws.receive({ type: "unsubscribed", id: env.ws.frames("unsubscribe")[0].id, channel: "room:a" });
  env.ws.receive({ type: "subscribed", id: second.id, channel: "room:a", epoch: "e1", offset: 2, recovered: false, publications: [] });
  assert.deepEqual(events, [2]);
  assert.deepEqual(sub.position, { epoch: "e1", offset: 2 });
});

test("unsubscribe(): frame sent, event, position forgotten; listeners are kept on the reused object", () => {
  const { env, sub, got } = subscribedEnv(5);
  const ends = [];
  sub.on("unsubscribed", (e) => ends.push(e.reason));
  sub.unsubscribe();
  assert.equal(env.ws.last().type, "unsubscribe");
  assert.deepEqual(ends, ["client"]);
  assert.equal(sub.position, null);
  env.client.subscribe("room:a");
  assert.equal(env.ws.last("subscribe").recover, undefined);
  env.subscribed("room:a", { offset: 8 });
  env.ws.receive({ type: "message", ...pub("room:a", 9) });
  assert.deepEqual(offsets(got), [9]);
});

test("a terminal subscribe error ends the subscription with error + unsubscribed", () => {
  const env = setup();
  env.client.connect();
  env.welcome();
  const sub = env.client.subscribe("room:secret");
  const seen = [];
  sub.on("error", (e) => seen.push(["error", e.code]));
  sub.on("unsubscribed", (e) => seen.push(["unsubscribed", e.reason]));
  env.ws.receive({ type: "error", id: env.ws.last("subscribe").id, code: "permission_denied", message: "no" });
  assert.deepEqual(seen, [["error", "permission_denied"], ["unsubscribed", "permission_denied"]]);
  assert.equal(sub.state, "unsubscribed");
  env.clock.advance(5000);
  assert.equal(env.ws.frames("subscribe").length, 1);
});

test("a temporary subscribe error is retried with backoff in the same connection", () => {
  const env = setup();
  env.client.connect();
  env.welcome();
  const sub = env.client.subscribe("room:a");
  const errors = [];
  sub.on("error", (e) => errors.push(e.code));
  env.ws.receive({ type: "error", id: env.ws.last("subscribe").id, code: "unavailable", message: "redis" });
  assert.equal(sub.state, "subscribing");
  env.clock.advance(249);
  assert.equal(env.ws.frames("subscribe").length, 1);
  env.clock.advance(1);
  assert.equal(env.ws.frames("subscribe").length, 2);
  env.subscribed("room:a");
  assert.equal(sub.state, "subscribed");
  assert.deepEqual(errors, ["unavailable"]);
});

test("a subscribe timeout retries (unsubscribing first); the late reply is dropped", () => {
  const env = setup();
  env.client.connect();
  env.welcome();
  const sub = env.client.subscribe("room:a");
  const first = env.ws.last("subscribe");
  env.clock.advance(10_000);
  assert.equal(sub.state, "subscribing");
  env.ws.receive({ type: "subscribed", id: first.id, channel: "room:a", epoch: "e1", offset: 1, recovered: false, publications: [] });
  assert.equal(sub.state, "subscribing", "late reply of a timed-out request");
  env.clock.advance(250);
  assert.deepEqual(env.ws.sent.slice(-2).map((f) => f.type), ["unsubscribe", "subscribe"]);
});

test("join and leave reach the subscription", () => {
  const { env, sub } = subscribedEnv(0);
  const seen = [];
  sub.on("join", (u) => seen.push(["join", u.username]));
  sub.on("leave", (u) => seen.push(["leave", u.username]));
  env.ws.receive({ type: "join", channel: "room:a", user: { id: 8, username: "bob" } });
  env.ws.receive({ type: "leave", channel: "room:a", user: { id: 8, username: "bob" } });
  env.ws.receive({ type: "join", channel: "room:other", user: { id: 9, username: "x" } });
  assert.deepEqual(seen, [["join", "bob"], ["leave", "bob"]]);
});

test("a handler that unsubscribes during a replay stops the rest of it", () => {
  const { env, sub, got } = subscribedEnv(5);
  env.ws.receive({ type: "message", ...pub("room:a", 7) });
  sub.on("publication", (p) => p.offset === 6 && sub.unsubscribe());
  env.subscribed("room:a", { offset: 8, recovered: true, publications: [pub("room:a", 6), pub("room:a", 7), pub("room:a", 8)] });
  assert.deepEqual(offsets(got), [6]);
  assert.equal(sub.position, null);
});
