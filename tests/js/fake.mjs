// Test doubles for realtime.js: a fake clock, a fake WebSocket, fake window/document, helpers.
// No real network and no real waiting: tests drive the clock with advance().

import { Client } from "../../realtime/static/realtime/realtime.js";

export const T0 = 1_800_000_000_000; // ms; far from 0 so "0" bugs show

/** Timers that fire only when the test advances the clock; `jump` moves the wall clock alone. */
export class FakeClock {
  constructor(start = T0) {
    this.t = start;
    this.timers = new Map();
    this.seq = 0;
    this.now = () => this.t;
    this.setTimeout = (fn, ms = 0) => {
      const id = ++this.seq;
      this.timers.set(id, { at: this.t + Math.max(0, ms), fn, id });
      return id;
    };
    this.clearTimeout = (id) => this.timers.delete(id);
  }
  /** Fire every timer due within `ms`, in time order (then creation order), including new ones. */
  advance(ms) {
    const end = this.t + ms;
    for (;;) {
      let next = null;
      for (const t of this.timers.values()) if (t.at <= end && (!next || t.at < next.at || (t.at === next.at && t.id < next.id))) next = t;
      if (!next) break;
      this.timers.delete(next.id);
      this.t = Math.max(this.t, next.at);
      next.fn();
    }
    this.t = end;
  }
  /** The wall clock moves but no timer fires (a suspended laptop, a throttled background tab). */
  jump(ms) {
    this.t += ms;
  }
  get pending() {
    return this.timers.size;
  }
}

/** A WebSocket class recording its instances; the test plays the server. */
export function makeWebSocket() {
  class FakeWebSocket {
    static instances = [];
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols === undefined ? [] : [].concat(protocols); // Sec-WebSocket-Protocol offers
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      FakeWebSocket.instances.push(this);
    }
    send(text) {
      if (this.readyState !== 1) throw new Error("send on a socket that is not open");
      this.sent.push(JSON.parse(text));
    }
    close(code, reason) {
      if (code !== 1000 && !(code >= 3000 && code <= 4999)) throw new Error(`InvalidAccessError: close(${code})`);
      this.closedWith = { code, reason };
      this.readyState = 3;
      this.onclose?.({ code, reason, wasClean: true }); // the client must have detached by now
    }
    // --- the server side
    open() {
      this.readyState = 1;
      this.onopen?.({});
    }
    receive(frame) {
      this.onmessage?.({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
    }
    serverClose(code, reason = "") {
      this.readyState = 3;
      this.onclose?.({ code, reason, wasClean: code !== 1006 });
    }
    /** `disconnect` frame then close, as the server does. */
    disconnect(code, reason = "") {
      this.receive({ type: "disconnect", code, reason, reconnect: !(code === 1000 || (code >= 4500 && code <= 4999)) });
      this.serverClose(code, reason);
    }
    /** The access token offered as the subprotocol `realtime.bearer.<token>`, or undefined. */
    get bearer() {
      const offer = this.protocols.find((p) => p.startsWith("realtime.bearer."));
      return offer === undefined ? undefined : offer.slice("realtime.bearer.".length);
    }
    /** What this socket asked to resume: `{resume, positions}` from its query (or its `auth` frame). */
    get resumeRequest() {
      const auth = this.last("auth");
      if (auth) return { resume: auth.resume, positions: auth.positions };
      const query = new URL(this.url).searchParams;
      const positions = query.get("positions");
      return { resume: query.get("resume") ?? undefined, positions: positions === null ? undefined : JSON.parse(positions) };
    }
    frames(type) {
      return type ? this.sent.filter((f) => f.type === type) : this.sent;
    }
    last(type) {
      const all = this.frames(type);
      return all[all.length - 1];
    }
  }
  return FakeWebSocket;
}

/** An EventTarget that counts its listeners, so tests can check they are all removed. */
export class FakeTarget extends EventTarget {
  constructor(props = {}) {
    super();
    Object.assign(this, props);
    this.listeners = 0;
  }
  addEventListener(type, fn, opts) {
    this.listeners++;
    super.addEventListener(type, fn, opts);
  }
  removeEventListener(type, fn, opts) {
    this.listeners--;
    super.removeEventListener(type, fn, opts);
  }
  fire(type) {
    this.dispatchEvent(new Event(type));
  }
}

/** Let pending promise callbacks (an async token provider) run. Not a sleep: no clock involved. */
export const flush = () => new Promise((resolve) => setImmediate(resolve));

/** An unsigned JWT with this `exp` (seconds) and a `jti` so two tokens differ. */
export function jwt(exp, jti = "a") {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "HS256" })}.${b64({ exp, jti })}.sig`;
}

export const silentLogger = { debug() {}, warn() {}, error() {}, info() {} };

/** A client wired to fakes; `states` and `errors` collect the events. */
export function setup(options = {}, url = "ws://test/ws/") {
  const clock = new FakeClock();
  const WS = makeWebSocket();
  const win = new FakeTarget();
  const doc = new FakeTarget({ visibilityState: "visible" });
  const client = new Client(url, {
    token: "tok",
    WebSocket: WS,
    now: clock.now,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    random: () => 0.5,
    window: win,
    document: doc,
    logger: silentLogger,
    ...options,
  });
  const states = [];
  const errors = [];
  client.on("state", (e) => states.push(e));
  client.on("error", (e) => errors.push(e));
  const env = {
    clock, WS, win, doc, client, states, errors,
    /** The newest socket. */
    get ws() {
      return WS.instances[WS.instances.length - 1];
    },
    /** Open the newest socket and answer with `welcome` (the reply to its `auth` frame, or a push). */
    welcome(fields = {}) {
      const ws = env.ws;
      if (ws.readyState === 0) ws.open();
      const auth = ws.last("auth");
      ws.receive({ type: "welcome", id: auth?.id, session: "s_1", user: { id: 7, username: "ann" }, expires_at: null, heartbeat: 25, resume_window: 120, resumed: false, ...fields });
      return ws;
    },
    /** Answer the newest `subscribe` for `channel` on the newest socket. */
    subscribed(channel, fields = {}) {
      const req = env.ws.frames("subscribe").filter((f) => f.channel === channel).pop();
      env.ws.receive({ type: "subscribed", id: req.id, channel, epoch: "e1", offset: 0, recovered: false, publications: [], ...fields });
      return req;
    },
    stateNames() {
      return states.map((s) => s.state);
    },
  };
  return env;
}

/** A publication frame body. */
export function pub(channel, offset, epoch = "e1", data = { n: offset }) {
  return { channel, epoch, offset, data, user: 7, ts: T0 + offset };
}
