// Full-jitter backoff: bounds, cap, growth with the attempt, reset only at welcome.

import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay } from "../../realtime/static/realtime/realtime.js";
import { setup, flush } from "./fake.mjs";

test("full jitter: the delay spans [0, min(max, min * 2^attempt))", () => {
  assert.equal(backoffDelay(0, 500, 20000, () => 0), 0);
  assert.equal(backoffDelay(0, 500, 20000, () => 0.999999) < 500, true);
  assert.equal(backoffDelay(0, 500, 20000, () => 0.5), 250);
  assert.equal(backoffDelay(3, 500, 20000, () => 0.5), 2000);
});

test("the ceiling grows with the attempt, then is capped at maxDelay", () => {
  const ceiling = (a) => backoffDelay(a, 500, 20000, () => 1);
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7].map(ceiling), [500, 1000, 2000, 4000, 8000, 16000, 20000, 20000]);
  assert.equal(ceiling(5000), 20000, "no overflow for a huge attempt");
});

test("defaults are 0.5 s and 20 s", () => {
  assert.equal(backoffDelay(0, undefined, undefined, () => 1), 500);
  assert.equal(backoffDelay(10, undefined, undefined, () => 1), 20000);
});

test("sampled delays stay within bounds", () => {
  for (let a = 0; a < 12; a++) {
    for (let i = 0; i < 50; i++) {
      const d = backoffDelay(a);
      assert.ok(d >= 0 && d < Math.min(20000, 500 * 2 ** a), `${a}: ${d}`);
    }
  }
});

test("the client's delays grow with each failed attempt and reset at welcome, not at open", async () => {
  const env = setup({ random: () => 1, minDelay: 100, maxDelay: 1000 });
  env.client.connect();
  const delays = () => env.states.filter((s) => s.state === "disconnected").map((s) => s.delayMs);
  for (let i = 0; i < 5; i++) {
    env.ws.open(); // the socket opens, but the server drops it before welcome: no reset
    env.ws.serverClose(1011);
    env.clock.advance(delays().at(-1));
  }
  assert.deepEqual(delays(), [100, 200, 400, 800, 1000]);
  env.welcome();
  env.ws.serverClose(1011);
  assert.equal(delays().at(-1), 100, "welcome reset the attempt counter");
  await flush();
});
