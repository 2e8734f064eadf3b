// Credentials at the handshake (docs/protocol.md 11.4): the access token goes in
// Sec-WebSocket-Protocol as `realtime.bearer.<token>`, beside `realtime.v1`, never in the URL.
// So the socket needs none of the server's places for anonymous sockets (an anonymous flood
// cannot keep the browser out). Resume travels in the query (the session id is not a credential).

import { test } from "node:test";
import assert from "node:assert/strict";
import { setup, flush, jwt, T0 } from "./fake.mjs";

test("the token is offered as a subprotocol beside realtime.v1; nothing of it in the URL, no auth frame", () => {
  const token = jwt(T0 / 1000 + 300);
  const env = setup({ token });
  env.client.connect();
  assert.deepEqual(env.ws.protocols, ["realtime.v1", `realtime.bearer.${token}`]);
  assert.equal(env.ws.url, "ws://test/ws/");
  env.ws.open();
  assert.deepEqual(env.ws.sent, [], "the server pushes welcome after a handshake with credentials");
  env.ws.receive({ type: "welcome", session: "s_1", user: { id: 7, username: "ann" }, expires_at: null, heartbeat: 25, resume_window: 120, resumed: false });
  assert.equal(env.client.state, "connected");
});

test("a JWT is all subprotocol token characters (RFC 7230)", () => {
  const token = jwt(T0 / 1000 + 300);
  assert.match(`realtime.bearer.${token}`, /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/);
});

test("a provider's token is offered too, and after 4009 the fresh one", async () => {
  let n = 0;
  const env = setup({ token: undefined, getToken: async () => `t${++n}` });
  env.client.connect();
  await flush();
  assert.equal(env.ws.bearer, "t1");
  env.welcome();
  env.ws.disconnect(4009, "token_expired");
  env.clock.advance(250);
  await flush();
  assert.equal(env.ws.bearer, "t2");
});

test("reconnect: resume and positions go in the query; the token still in the subprotocol", () => {
  const env = setup();
  env.client.connect();
  env.welcome({ session: "s_42" });
  env.client.subscribe("room:a");
  env.subscribed("room:a", { offset: 5 });
  env.ws.serverClose(1006);
  env.clock.advance(250);
  const url = new URL(env.ws.url);
  assert.equal(url.searchParams.get("resume"), "s_42");
  assert.deepEqual(JSON.parse(url.searchParams.get("positions")), { "room:a": { epoch: "e1", offset: 5 } });
  assert.equal(url.searchParams.get("token"), null);
  assert.equal(env.ws.bearer, "tok");
  env.ws.open();
  assert.deepEqual(env.ws.sent, []);
});

test("positions too long for a URL are left out: the server replays from the session's record", () => {
  const env = setup();
  env.client.connect();
  env.welcome({ session: "s_42" });
  for (let i = 0; i < 100; i++) {
    env.client.subscribe(`room:channel-with-a-long-name-${i}`);
    env.subscribed(`room:channel-with-a-long-name-${i}`, { offset: 1000 + i });
  }
  env.ws.serverClose(1006);
  env.clock.advance(250);
  const url = new URL(env.ws.url);
  assert.equal(url.searchParams.get("resume"), "s_42");
  assert.equal(url.searchParams.get("positions"), null);
  assert.ok(env.ws.url.length < 2200, `URL of ${env.ws.url.length} characters`);
});

test("a token that cannot be a subprotocol falls back to the auth frame (and `auth=frame`)", () => {
  const env = setup({ token: "not a (subprotocol) token" });
  env.client.connect();
  assert.deepEqual(env.ws.protocols, []);
  assert.equal(env.ws.url, "ws://test/ws/?auth=frame");
  env.ws.open();
  assert.equal(env.ws.last("auth").token, "not a (subprotocol) token");
  env.welcome();
  assert.equal(env.client.state, "connected");
});

test("an auth frame the server could not check (`unavailable`) is tried again on a new socket after the backoff", () => {
  const env = setup({ token: "not a (subprotocol) token" });
  env.client.connect();
  env.ws.open();
  const first = env.ws;
  first.receive({ type: "error", id: first.last("auth").id, code: "unavailable", message: "Redis is away" });
  assert.equal(env.client.state, "disconnected");
  assert.equal(first.closedWith.reason, "auth_unavailable");
  for (let waited = 0; env.ws === first && waited < 30_000; waited += 100) env.clock.advance(100); // the backoff
  assert.notEqual(env.ws, first); // a new socket
  env.ws.open();
  assert.equal(env.ws.last("auth").token, "not a (subprotocol) token");
  env.welcome();
  assert.equal(env.client.state, "connected");
});

test("an auth frame refused for good (`unauthorized`) waits for the server's close", () => {
  const env = setup({ token: "not a (subprotocol) token" });
  env.client.connect();
  env.ws.open();
  env.ws.receive({ type: "error", id: env.ws.last("auth").id, code: "unauthorized", message: "bad token" });
  assert.equal(env.ws.closedWith, null);
  env.ws.serverClose(4501, "unauthorized");
  assert.equal(env.client.state, "closed");
});

test("cookie mode offers no subprotocol", () => {
  const env = setup({ token: undefined });
  env.client.connect();
  assert.deepEqual(env.ws.protocols, []);
  assert.equal(env.ws.url, "ws://test/ws/");
});
