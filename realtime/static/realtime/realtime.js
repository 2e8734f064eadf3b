/**
 * The browser client of the realtime WebSocket protocol (docs/protocol.md; PROTOCOL §10).
 *
 * One dependency-free ES module. Two small state machines:
 *   Client:       disconnected -> connecting -> connected, and `closed` (terminal until connect()).
 *   Subscription: unsubscribed -> subscribing -> subscribed.
 * Every client state change is one `state` event `{state, previous, code, reason}`, plus
 * `delayMs` when a retry is scheduled and `resumed` on `connected`.
 *
 * Incoming frames are handled strictly in order, synchronously, one at a time; application
 * handlers are isolated (a throwing handler is reported on the client's `error` event and the
 * loop goes on). Every timer and refresh belongs to one connection (the generation counter
 * `_gen`): whatever was scheduled for a connection that has ended does nothing.
 *
 * Credentials travel at the handshake (docs/protocol.md 11.4): the access token is offered as the
 * subprotocol `realtime.bearer.<token>` beside `realtime.v1` (which the server chooses), never in
 * the URL; so the socket needs no place of the server's for anonymous sockets. A token that cannot
 * be a subprotocol (not RFC 7230 token characters; a JWT always can) goes in a first `auth` frame.
 *
 * Close codes the client makes up itself when it judges a socket dead (all reconnect, 4004 like
 * the server's heartbeat_timeout): 4004 "no_ping" (liveness), 4004 "connect_timeout" (no
 * `welcome` in time), 4004 "online" (the browser came back online). It closes such a socket with
 * 4004 too, never 1000, because the server does not let a session closed with 1000 be resumed.
 */

const OPEN = 1; // WebSocket.OPEN, spelled out so an injected class need not define it
const LIVENESS_GRACE_MS = 1000; // one more look before declaring a socket dead (centrifuge-js #423)
const TOKEN_LEAD_S = 5; // a token this close to its `exp` is not worth dialling with
const DEAD = 4004;
const SUBPROTOCOL = "realtime.v1";
const BEARER = "realtime.bearer.";
const TOKEN_CHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/; // RFC 7230 `token`: what a subprotocol may hold
// Positions make a URL long (about 60 characters a channel); past this the query carries `resume`
// alone and the server replays from its record of the session (duplicates are dropped here).
const MAX_POSITIONS_QUERY = 2000;
// Subscribe errors worth retrying in the same connection; every other code ends the subscription.
const RETRYABLE = new Set(["timeout", "unavailable", "internal", "rate_limited"]);

/**
 * An error with a `code`: a protocol error code, or "not_connected" (no connection within the request
 * timeout), "timeout" (sent, no reply in time), "disconnected" (sent, the connection ended before the
 * reply), "closed" (the client is closed), "handler", "token", "refresh", "bad_frame".
 * A request's error says whether its frame left the client: `sent` true or false (undefined on errors
 * that are not a request's). Sent with code timeout, disconnected or closed: the outcome is unknown.
 */
export class RealtimeError extends Error {
  constructor(code, message, options) {
    super(message || code, options);
    this.name = "RealtimeError";
    this.code = code;
    if (options && typeof options.sent === "boolean") this.sent = options.sent;
  }
}

/**
 * Full-jitter backoff: a random delay in [0, min(maxDelay, minDelay * 2^attempt)) ms.
 * @param {number} attempt 0 for the first retry
 */
export function backoffDelay(attempt, minDelay = 500, maxDelay = 20000, random = Math.random) {
  return random() * Math.min(maxDelay, minDelay * 2 ** attempt);
}

/** 1000 and 4500-4999 mean "do not reconnect" (PROTOCOL §7); every other code reconnects. */
function stops(code) {
  return code === 1000 || (code >= 4500 && code <= 4999);
}

/** The `exp` (Unix seconds) of a JWT, read without verifying; null when there is none. */
function tokenExp(token) {
  try {
    const payload = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return typeof payload.exp === "number" ? payload.exp : null;
  } catch {
    return null;
  }
}

/** `/ws/` or `https://host/ws/` -> `wss://host/ws/` (relative URLs resolve against the page). */
function wsUrl(url, win) {
  if (/^wss?:/i.test(url)) return url;
  if (/^https?:/i.test(url)) return url.replace(/^http/i, "ws");
  if (!win || !win.location) return url;
  const u = new URL(url, win.location.href);
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  return u.toString();
}

/** A tiny event emitter whose handlers cannot break the caller: their errors go to `onThrow`. */
class Emitter {
  constructor(onThrow) {
    this._handlers = new Map();
    this._onThrow = onThrow;
  }
  on(event, fn) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(fn);
    return () => this.off(event, fn);
  }
  off(event, fn) {
    this._handlers.get(event)?.delete(fn);
  }
  count(event) {
    return this._handlers.get(event)?.size ?? 0;
  }
  emit(event, arg) {
    for (const fn of [...(this._handlers.get(event) ?? [])]) {
      try {
        fn(arg);
      } catch (err) {
        this._onThrow(err, event);
      }
    }
  }
}

/** The client's handle on one channel. Made by `client.subscribe(channel)`, one per channel, reused. */
export class Subscription {
  constructor(client, channel) {
    /** @type {string} */ this.channel = channel;
    /** @type {"unsubscribed"|"subscribing"|"subscribed"} */ this.state = "unsubscribed";
    /** Position of the last publication delivered: `{epoch, offset}` or null. */
    this.position = null;
    this._client = client;
    this._events = new Emitter((err, event) => client._handlerThrew(err, event, channel));
    this._requestId = null; // id of the subscribe in flight; any other reply is stale
    this._awaitPush = false; // resumed session: the server pushes `subscribed` on its own
    this._attempt = 0; // retries of temporary subscribe errors
    this._seq = 0; // bumped on every transition, so a callback can tell that the world moved on
  }

  /**
   * Listen to "publication", "subscribed", "subscribing", "join", "leave", "unsubscribed", "error".
   * @returns {() => void} a function that removes the listener
   */
  on(event, fn) {
    return this._events.on(event, fn);
  }

  /** Remove a listener added with `on`. */
  off(event, fn) {
    this._events.off(event, fn);
  }

  /** Subscribe again after `unsubscribe()` or a terminal end (same as `client.subscribe(channel)`). */
  subscribe() {
    this._client._start(this);
    return this;
  }

  /** Stop receiving this channel; forgets the position. */
  unsubscribe() {
    this._client._stop(this);
  }

  /** Every transition forgets the request in flight, so a late reply to it is recognised as stale. */
  _set(state) {
    this.state = state;
    this._seq++;
    this._requestId = null;
    this._awaitPush = false;
  }
}

/** A connection to the realtime server, with automatic reconnect, resume and recovery. */
export class Client {
  /**
   * @param {string|string[]} urlOrUrls one URL or several (round robin on reconnect); default "/ws/"
   * @param {object} [options] see realtime.d.ts (`ClientOptions`)
   */
  constructor(urlOrUrls = "/ws/", options = {}) {
    const o = options;
    this._urls = Array.isArray(urlOrUrls) ? [...urlOrUrls] : [urlOrUrls];
    if (!this._urls.length) throw new TypeError("Client needs at least one URL");
    this._getToken = typeof o.getToken === "function" ? o.getToken : null;
    this._token = typeof o.token === "string" && o.token ? o.token : null;
    // Neither a token nor a provider: rely on the Django session cookie (same-origin pages).
    this._cookieAuth = !this._getToken && !this._token;
    this._authFrame = false; // this connection authenticates with an `auth` frame (set at each dial)
    this._minDelay = o.minDelay ?? 500;
    this._maxDelay = o.maxDelay ?? 20000;
    this._requestTimeout = o.requestTimeout ?? 10000;
    this._heartbeatTimeout = o.heartbeatTimeout ?? 10000;
    this._WebSocket = o.WebSocket ?? globalThis.WebSocket;
    const now = o.now ?? Date.now, st = o.setTimeout ?? globalThis.setTimeout, ct = o.clearTimeout ?? globalThis.clearTimeout;
    // Called as plain functions: window.setTimeout throws "Illegal invocation" with another `this`.
    this._now = () => now();
    this._st = (fn, ms) => st(fn, ms);
    this._ct = (h) => ct(h);
    this._random = o.random ?? Math.random;
    this._window = "window" in o ? o.window : globalThis.window;
    this._document = "document" in o ? o.document : globalThis.document;
    this._logger = o.logger ?? console;

    /** @type {"disconnected"|"connecting"|"connected"|"closed"} */ this.state = "disconnected";
    /** Session id from the last `welcome`, or null. */ this.session = null;
    /** `{id, username}` from the last `welcome`, or null. */ this.user = null;

    this._events = new Emitter((err, event) => this._handlerThrew(err, event, null));
    this._subs = new Map();
    this._gen = 0; // connection generation: bumped whenever a connection (attempt) starts or ends
    this._ws = null;
    this._wanted = false; // connect() called and not disconnect()ed: keep trying
    this._attempt = 0; // backoff attempt, reset only by `welcome`
    this._urlIndex = 0;
    this._nextId = 0;
    this._pending = new Map(); // id -> request sent on the current connection
    this._waiting = []; // requests made while not connected
    this._timers = new Set(); // timers of the current connection
    this._reconnectTimer = null;
    this._connectTimer = null;
    this._livenessTimer = null;
    this._heartbeatMs = 0;
    this._lastFrameAt = 0;
    this._suspect = false;
    this._serverDisconnect = null; // the `disconnect` frame that precedes the server's close
    this._tokenStale = false; // after 4009: ask the provider before dialling
    this._tokenMustDiffer = false; // after 4501: stop unless the provider has something new
    this._refreshing = false;
    this._lastClose = { code: null, reason: "" }; // what the next attempt's `connecting` event reports
    this._welcomed = null; // what connect() resolves with
    this._connectWaiters = [];
    this._lifecycle = null;
  }

  /**
   * Listen to "state" `{state, previous, code, reason, delayMs?, resumed?}` or "error" (RealtimeError).
   * @returns {() => void} a function that removes the listener
   */
  on(event, fn) {
    return this._events.on(event, fn);
  }

  /** Remove a listener added with `on`. */
  off(event, fn) {
    this._events.off(event, fn);
  }

  /**
   * Start connecting (and keep reconnecting). Resolves at the first `welcome` with
   * `{session, user, resumed}`; rejects with code "closed" if the client closes first.
   */
  connect() {
    if (this.state === "connected") return Promise.resolve(this._welcomed);
    const p = new Promise((resolve, reject) => this._connectWaiters.push({ resolve, reject }));
    p.catch(() => {}); // a caller that ignores the promise should not see an "unhandled rejection"
    if (!this._wanted) {
      this._wanted = true;
      this._attempt = 0;
      this._listen();
      this._open(null, "connect");
    }
    return p;
  }

  /**
   * Close for good (code 1000): ends the session, fails pending requests, removes every listener
   * it added. Subscriptions are kept (state `subscribing`) and come back with the next connect().
   */
  disconnect() {
    if (this.state === "closed") return;
    this._close(1000, "client", true);
  }

  /**
   * The subscription of `channel` (created on first use), subscribing now or at the next connection.
   * @returns {Subscription}
   */
  subscribe(channel) {
    let sub = this._subs.get(channel);
    if (!sub) this._subs.set(channel, (sub = new Subscription(this, channel)));
    this._start(sub);
    return sub;
  }

  /** Publish `data` to `channel`; resolves `{channel, epoch, offset}`. */
  publish(channel, data) {
    return this._call({ type: "publish", channel, data }).then((r) => ({ channel: r.channel, epoch: r.epoch, offset: r.offset }));
  }

  /**
   * History of `channel`: after `since`, or the newest `limit`. Resolves `{channel, epoch, offset, publications}`.
   * @param {string} channel
   * @param {{since?: {epoch: string, offset: number}, limit?: number}} [options]
   */
  history(channel, { since, limit } = {}) {
    const frame = { type: "history", channel };
    if (since) frame.since = { epoch: since.epoch, offset: since.offset };
    if (limit != null) frame.limit = limit;
    return this._call(frame);
  }

  /** Who is on `channel` now; resolves `{channel, members: [{id, username, connections}]}`. */
  presence(channel) {
    return this._call({ type: "presence", channel });
  }

  // ------------------------------------------------------------------ connection

  _open(code, reason) {
    if (this._reconnectTimer !== null) this._ct(this._reconnectTimer);
    this._reconnectTimer = null;
    const gen = ++this._gen;
    this._setState("connecting", code, reason);
    if (gen !== this._gen || this.state !== "connecting") return; // a state handler changed course
    if (!this._needsToken()) return this._dial(gen);
    Promise.resolve()
      .then(() => this._getToken())
      .then(
        (token) => {
          if (gen !== this._gen) return; // disconnect() or a newer attempt while the provider ran
          // Never send an empty token; after 4501 the same token again would only be refused again.
          if (typeof token !== "string" || !token || (this._tokenMustDiffer && token === this._token)) {
            return this._close(4501, "unauthorized");
          }
          this._token = token;
          this._tokenStale = this._tokenMustDiffer = false;
          this._dial(gen);
        },
        (err) => {
          if (gen !== this._gen) return;
          if (err && err.code === "unauthorized") return this._close(4501, "unauthorized"); // the provider says: logged out
          this._report(new RealtimeError("token", "The token provider failed", { cause: err }));
          this._scheduleReconnect(null, "token_error");
        },
      );
  }

  /** Call the provider only when needed: first connect, after 4009 / 4501, or near the token's `exp`. */
  _needsToken() {
    if (!this._getToken) return false;
    if (!this._token || this._tokenStale || this._tokenMustDiffer) return true;
    const exp = tokenExp(this._token);
    return exp !== null && exp - TOKEN_LEAD_S <= this._now() / 1000;
  }

  _dial(gen) {
    let url = wsUrl(this._urls[this._urlIndex++ % this._urls.length], this._window);
    const sep = () => (url.includes("?") ? "&" : "?");
    // The token at the handshake when it can be a subprotocol (a JWT always can), else in a first frame.
    this._authFrame = !this._cookieAuth && !TOKEN_CHARS.test(this._token);
    const protocols = this._cookieAuth || this._authFrame ? [] : [SUBPROTOCOL, BEARER + this._token];
    if (this._authFrame) {
      // `auth=frame` tells the server not to let a session cookie of this browser (say, an admin
      // logged in on the same site) authenticate the socket before the frame arrives.
      url += sep() + "auth=frame";
    } else if (this.session) {
      // No auth frame, so resume travels in the query (the session id; never a token: those stay out of URLs).
      url += sep() + "resume=" + encodeURIComponent(this.session);
      const positions = this._positions();
      const query = positions && "&positions=" + encodeURIComponent(JSON.stringify(positions));
      if (query && query.length <= MAX_POSITIONS_QUERY) url += query;
    }
    let ws;
    try {
      ws = protocols.length ? new this._WebSocket(url, protocols) : new this._WebSocket(url);
    } catch (err) {
      this._report(new RealtimeError("connect_error", "Could not open the WebSocket", { cause: err }));
      return this._scheduleReconnect(null, "connect_error");
    }
    this._ws = ws;
    ws.onopen = () => gen === this._gen && this._onOpen();
    ws.onmessage = (ev) => this._onFrame(gen, ev.data);
    ws.onerror = () => {}; // a close event always follows
    ws.onclose = (ev) => gen === this._gen && this._onSocketClose(ev.code, ev.reason);
    this._connectTimer = this._later(gen, this._requestTimeout, () => this._drop("connect_timeout"));
  }

  _onOpen() {
    this._lastFrameAt = this._now();
    if (!this._authFrame) return; // credentials came with the handshake: the server pushes `welcome`
    // Authenticate with the first frame, never the URL (tokens in query strings end up in logs).
    const frame = { type: "auth", id: ++this._nextId, token: this._token };
    this._authId = frame.id;
    if (this.session) {
      frame.resume = this.session;
      const positions = this._positions();
      if (positions) frame.positions = positions;
    }
    this._sendFrame(frame);
  }

  /** `{channel: {epoch, offset}}` of every wanted subscription that has a position, or null. */
  _positions() {
    const out = {};
    for (const sub of this._subs.values()) {
      if (sub.state !== "unsubscribed" && sub.position) out[sub.channel] = { ...sub.position };
    }
    return Object.keys(out).length ? out : null;
  }

  _onSocketClose(code, reason) {
    // The `disconnect` frame is more reliable than the close event (a lost close frame reads 1006).
    const d = this._serverDisconnect;
    if (d && typeof d.code === "number") [code, reason] = [d.code, d.reason ?? reason];
    this._teardown(null);
    this._afterClose(code, reason || "");
  }

  /** We judged the socket dead: drop it (resumable code) and reconnect, at once when `immediate`. */
  _drop(reason, immediate = false) {
    this._teardown(DEAD, reason);
    this._afterClose(DEAD, reason, immediate);
  }

  _afterClose(code, reason, immediate = false) {
    if (code === 4501 && this._getToken) this._tokenMustDiffer = true; // ask the provider once more
    else if (code === 4009 && this._getToken) this._tokenStale = true;
    else if (code === 4009 || stops(code)) return this._close(code, reason); // nothing new to try with
    this._scheduleReconnect(code, reason, immediate);
  }

  _scheduleReconnect(code, reason, immediate = false) {
    const delayMs = immediate ? 0 : backoffDelay(this._attempt++, this._minDelay, this._maxDelay, this._random);
    this._lastClose = { code, reason };
    this._setState("disconnected", code, reason, { delayMs });
    if (this.state !== "disconnected" || !this._wanted) return;
    if (immediate) return this._open(code, reason);
    this._reconnectTimer = this._st(() => {
      this._reconnectTimer = null;
      this._open(code, reason);
    }, delayMs);
  }

  /** Skip the backoff wait (the page came back online or visible). */
  _reconnectNow() {
    if (this.state === "disconnected" && this._reconnectTimer !== null) this._open(this._lastClose.code, this._lastClose.reason);
  }

  /** End the current connection (or attempt): every timer, pending request and subscription reply of it. */
  _teardown(closeCode, closeReason) {
    const ws = this._ws;
    this._ws = null;
    this._gen++;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      if (closeCode != null) {
        try {
          ws.close(closeCode, closeReason);
        } catch (err) {
          this._logger?.debug?.("realtime: close failed", err);
        }
      }
    }
    for (const h of this._timers) this._ct(h);
    this._timers.clear();
    this._connectTimer = this._livenessTimer = null;
    this._serverDisconnect = null;
    this._suspect = this._refreshing = false;
    const ended = this._wanted
      ? new RealtimeError("disconnected", "The connection ended before the reply", { sent: true })
      : new RealtimeError("closed", "The client was closed before the reply", { sent: true });
    for (const req of [...this._pending.values()]) this._settle(req, ended);
    for (const sub of this._subs.values()) {
      if (sub.state === "unsubscribed") continue;
      const was = sub.state;
      sub._set("subscribing"); // also cancels a pending retry timer
      if (was === "subscribed") sub._events.emit("subscribing", { channel: sub.channel, reason: "disconnected" });
    }
  }

  _close(code, reason, closeSocket = false) {
    this._wanted = false;
    if (this._reconnectTimer !== null) this._ct(this._reconnectTimer);
    this._reconnectTimer = null;
    this._teardown(closeSocket ? 1000 : null, reason);
    this._unlisten();
    this.session = null; // 1000 and 4500-4999 end the session: a later connect() starts a new one
    for (const req of [...this._waiting]) this._settle(req, new RealtimeError("closed", "The client is closed", { sent: false }));
    this._setState("closed", code, reason);
    for (const w of this._connectWaiters.splice(0)) w.reject(new RealtimeError("closed", `Closed before welcome (${code} ${reason})`));
  }

  _setState(state, code, reason, extra) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this._events.emit("state", { state, previous, code: code ?? null, reason: reason ?? "", ...extra });
  }

  /** A timer of the current connection: cleared by teardown, and a no-op if it fires for another one. */
  _later(gen, ms, fn) {
    const h = this._st(() => {
      this._timers.delete(h);
      if (gen === this._gen) fn();
    }, ms);
    this._timers.add(h);
    return h;
  }

  // ------------------------------------------------------------------ frames in

  _onFrame(gen, raw) {
    if (gen !== this._gen) return; // a late event of a socket we already left
    this._lastFrameAt = this._now(); // any frame proves the connection alive
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      frame = null;
    }
    if (!frame || typeof frame !== "object" || Array.isArray(frame) || typeof frame.type !== "string") {
      return this._report(new RealtimeError("bad_frame", "The server sent a frame that is not a JSON object with a type"));
    }
    try {
      this._dispatch(frame);
    } catch (err) {
      // Our own bug must not stop the read loop either (centrifuge-js #319).
      this._report(new RealtimeError("internal", `Handling a ${frame.type} frame failed`, { cause: err }));
    }
  }

  _dispatch(frame) {
    if (frame.type === "welcome") return this._onWelcome(frame); // the reply to auth, or a push (cookie)
    if (frame.id != null) return this._onReply(frame);
    const sub = typeof frame.channel === "string" ? this._subs.get(frame.channel) : undefined;
    switch (frame.type) {
      case "ping":
        return this._sendFrame({ type: "pong" });
      case "message":
        if (sub && sub.state === "subscribed") this._deliver(sub, frame, false);
        return;
      case "join":
      case "leave":
        if (sub && sub.state === "subscribed") sub._events.emit(frame.type, frame.user);
        return;
      case "subscribed": // pushed after a resume, one per restored channel
        if (!sub || sub.state === "unsubscribed") return this._request({ type: "unsubscribe", channel: frame.channel });
        return this._onSubscribed(sub, frame, sub.position !== null);
      case "unsubscribed":
        if (!sub || sub.state === "unsubscribed") return;
        if (frame.reason === "insufficient_state") return this._resync(sub, "insufficient_state", false);
        return this._end(sub, frame.reason || "removed");
      case "expiring":
        return this._startRefresh(frame.expires_at);
      case "disconnect":
        this._serverDisconnect = { code: frame.code, reason: frame.reason };
        return;
      case "error":
        return this._report(new RealtimeError(frame.code, frame.message));
      default:
        this._logger?.debug?.("realtime: ignoring frame", frame.type);
    }
  }

  _onWelcome(frame) {
    if (this.state !== "connecting" || !this._ws) return; // a second welcome changes nothing
    const gen = this._gen;
    this._ct(this._connectTimer);
    this._timers.delete(this._connectTimer);
    this.session = frame.session ?? null;
    this.user = frame.user ?? null;
    this._heartbeatMs = frame.heartbeat > 0 ? frame.heartbeat * 1000 : 0;
    // Reset at welcome, not at open: a server that accepts sockets and then drops them must back off.
    this._attempt = 0;
    const resumed = frame.resumed === true;
    this._setState("connected", null, "welcome", { resumed });
    if (gen !== this._gen) return;
    this._armLiveness(this._heartbeatMs + this._heartbeatTimeout);
    for (const sub of this._subs.values()) {
      if (sub.state !== "subscribing" || sub._requestId !== null) continue;
      // Resumed: the server restores what `positions` named and pushes `subscribed` before anything else.
      if (resumed && sub.position) sub._awaitPush = true;
      else this._subscribe(sub, false);
    }
    this._later(gen, this._requestTimeout, () => {
      // A promised push that never came: subscribe the ordinary way.
      for (const sub of this._subs.values()) if (sub._awaitPush) this._resync(sub, "timeout", true);
    });
    for (const req of this._waiting.splice(0)) this._transmit(req);
    const info = (this._welcomed = { session: this.session, user: this.user, resumed });
    for (const w of this._connectWaiters.splice(0)) w.resolve(info);
  }

  _onReply(frame) {
    if (frame.id === this._authId && frame.type === "error") {
      // The server could not check the token (Redis or the database away) and keeps the socket open
      // for another `auth`: come back after the backoff rather than at the connect timeout.
      if (RETRYABLE.has(frame.code)) this._drop(`auth_${frame.code}`);
      return; // anything else: the server closes next (4501 or 4009)
    }
    const req = this._pending.get(frame.id);
    if (!req) return; // not a request of this connection (or one that already timed out): drop it
    if (frame.type === "error") return this._settle(req, new RealtimeError(frame.code, frame.message, { sent: true }));
    const { type, id, ...reply } = frame;
    this._settle(req, null, reply);
  }

  // ------------------------------------------------------------------ liveness

  _deadline() {
    return this._lastFrameAt + this._heartbeatMs + this._heartbeatTimeout;
  }

  _armLiveness(ms) {
    if (!this._heartbeatMs) return;
    if (this._livenessTimer !== null) this._ct(this._livenessTimer);
    this._timers.delete(this._livenessTimer);
    this._livenessTimer = this._later(this._gen, ms, () => this._checkLiveness());
  }

  /**
   * Compared on the wall clock, so a throttled or suspended timer still sees a dead socket when it
   * finally fires. Past the deadline it looks once more after a short grace: frames already queued
   * behind this timer (a laptop waking up) get read first.
   */
  _checkLiveness() {
    this._livenessTimer = null;
    const late = this._now() - this._deadline();
    if (late < 0) {
      this._suspect = false;
      return this._armLiveness(-late);
    }
    if (!this._suspect) {
      this._suspect = true;
      return this._armLiveness(LIVENESS_GRACE_MS);
    }
    this._drop("no_ping");
  }

  _listen() {
    if (this._lifecycle) return;
    this._lifecycle = [];
    const add = (target, event, fn) => {
      if (!target || typeof target.addEventListener !== "function") return;
      target.addEventListener(event, fn);
      this._lifecycle.push(() => target.removeEventListener(event, fn));
    };
    // `offline` forces nothing: the socket may survive a short outage; liveness decides.
    add(this._window, "online", () => this._onOnline());
    add(this._document, "visibilitychange", () => this._onVisible());
  }

  _unlisten() {
    for (const off of this._lifecycle ?? []) off();
    this._lifecycle = null;
  }

  /** Back online: the old socket may be dead without a close event (Mobile Safari, centrifuge-js #228). */
  _onOnline() {
    if (!this._wanted) return;
    if (this._ws) this._drop("online", true);
    else this._reconnectNow();
  }

  _onVisible() {
    if (!this._wanted || this._document?.visibilityState !== "visible") return;
    if (this.state === "disconnected") return this._reconnectNow();
    if (this.state !== "connected" || !this._heartbeatMs) return;
    // One loop turn first, so frames already received count, then judge on the wall clock.
    this._later(this._gen, 0, () => {
      if (this._now() >= this._deadline()) this._drop("no_ping", true);
    });
  }

  // ------------------------------------------------------------------ token refresh

  _startRefresh(expiresAt) {
    if (!this._getToken || this._refreshing) return; // one refresh chain per connection
    this._refreshing = true;
    this._refreshTry(this._gen, expiresAt, 0);
  }

  /** Provider, then `refresh`; a failure retries with jitter until `expires_at` (then 4009 and a reconnect). */
  _refreshTry(gen, expiresAt, attempt) {
    let final = false;
    const fail = (err) => {
      if (gen !== this._gen) return; // that connection ended: its refresh chain ends with it
      this._report(new RealtimeError("refresh", "Refreshing the token failed", { cause: err }));
      const delay = backoffDelay(attempt, this._minDelay, this._maxDelay, this._random);
      if (final || !(expiresAt > 0) || this._now() + delay >= expiresAt * 1000) {
        this._refreshing = false;
        return;
      }
      this._later(gen, delay, () => this._refreshTry(gen, expiresAt, attempt + 1));
    };
    Promise.resolve()
      .then(() => this._getToken())
      .then((token) => {
        if (gen !== this._gen) return;
        if (typeof token !== "string" || !token) {
          final = true; // the provider has nothing: stop asking, the reconnect after 4009 asks again
          throw new RealtimeError("unauthorized", "The token provider returned no token");
        }
        const done = () => {
          this._token = token; // kept for the next reconnect, now that the server took it
          this._refreshing = false;
        };
        this._request({ type: "refresh", token }, done, fail);
      })
      .catch((err) => {
        if (err && err.code === "unauthorized") final = true;
        fail(err);
      });
  }

  // ------------------------------------------------------------------ requests

  /** A public request: waits for the connection, settles with the reply or a RealtimeError. */
  _call(frame) {
    return new Promise((resolve, reject) => {
      if (this.state === "closed") return reject(new RealtimeError("closed", "The client is closed", { sent: false }));
      this._request(frame, resolve, reject, true);
    });
  }

  /**
   * Send `frame` with a fresh id (or queue it until `welcome` when `queue`); returns the request.
   * `requestTimeout` counts from here, the wait for a connection included: at its end a request never
   * sent fails with `not_connected`, one sent with `timeout`.
   * @param {object} frame
   * @param {(reply: any) => void} [resolve]
   * @param {(err: RealtimeError) => void} [reject]
   * @param {boolean} [queue]
   */
  _request(frame, resolve = () => {}, reject = () => {}, queue = false) {
    const req = { frame, resolve, reject, id: null, done: false, timer: null };
    // Before failing on timeout, give frames already received one more loop turn (centrifuge-js #398).
    req.timer = this._st(() => this._st(() => this._settle(req, this._timedOut(req)), 0), this._requestTimeout);
    if (this.state === "connected") this._transmit(req, queue);
    else if (queue) this._waiting.push(req);
    else this._settle(req, new RealtimeError("not_connected", "Not connected", { sent: false }));
    return req;
  }

  _timedOut(req) {
    const seconds = this._requestTimeout / 1000;
    if (req.id === null) return new RealtimeError("not_connected", `Not connected within ${seconds} s`, { sent: false });
    return new RealtimeError("timeout", `No reply to ${req.frame.type} within ${seconds} s`, { sent: true });
  }

  /** Send a request on the current socket; when it is already closing, it waits for the next one (`queue`). */
  _transmit(req, queue = true) {
    const id = ++this._nextId;
    if (!this._sendFrame({ ...req.frame, id })) {
      if (queue) this._waiting.push(req);
      else this._settle(req, new RealtimeError("not_connected", "Not connected", { sent: false }));
      return;
    }
    req.id = id;
    this._pending.set(id, req);
  }

  _settle(req, err, reply) {
    if (req.done) return;
    req.done = true;
    this._ct(req.timer);
    if (req.id !== null && this._pending.get(req.id) === req) this._pending.delete(req.id);
    const i = this._waiting.indexOf(req);
    if (i >= 0) this._waiting.splice(i, 1);
    if (err) req.reject(err);
    else req.resolve(reply);
  }

  _sendFrame(frame) {
    if (!this._ws || this._ws.readyState !== OPEN) return false;
    this._ws.send(JSON.stringify(frame));
    return true;
  }

  // ------------------------------------------------------------------ subscriptions

  _start(sub) {
    if (sub.state !== "unsubscribed") return;
    sub._set("subscribing");
    sub._attempt = 0;
    sub._events.emit("subscribing", { channel: sub.channel, reason: "subscribe" });
    if (sub.state === "subscribing") this._subscribe(sub, false);
  }

  _stop(sub) {
    if (sub.state === "unsubscribed") return;
    if (this.state === "connected") this._request({ type: "unsubscribe", channel: sub.channel });
    this._end(sub, "client");
  }

  /** The end of a subscription: by the app, by the server (`removed`), or by a non-retryable error. */
  _end(sub, reason) {
    sub._set("unsubscribed");
    sub.position = null;
    sub._events.emit("unsubscribed", { channel: sub.channel, reason });
  }

  /** Send `subscribe`, with `recover` from the position when there is one. */
  _subscribe(sub, unsubscribeFirst) {
    if (this.state !== "connected") return; // `welcome` subscribes it
    if (unsubscribeFirst) this._request({ type: "unsubscribe", channel: sub.channel });
    const frame = { type: "subscribe", channel: sub.channel };
    if (sub.position) frame.recover = { ...sub.position };
    const recovering = !!sub.position;
    const req = this._request(
      frame,
      (reply) => sub._requestId === req.id && this._onSubscribed(sub, reply, recovering),
      (err) => sub._requestId === req.id && this._onSubscribeError(sub, err),
    );
    sub._requestId = req.id;
  }

  /** Lost state (gap, new epoch, server could not fill): subscribe again, recovering from the position. */
  _resync(sub, reason, unsubscribeFirst) {
    sub._set("subscribing");
    sub._events.emit("subscribing", { channel: sub.channel, reason });
    if (sub.state === "subscribing") this._subscribe(sub, unsubscribeFirst);
  }

  _onSubscribed(sub, reply, recovering) {
    sub._set("subscribed");
    const seq = sub._seq;
    sub._attempt = 0;
    const pubs = Array.isArray(reply.publications) ? reply.publications : [];
    const newest = typeof reply.epoch === "string" && Number.isInteger(reply.offset) ? { epoch: reply.epoch, offset: reply.offset } : null;
    if (!recovering && newest) sub.position = newest; // store, then emit
    sub._events.emit("subscribed", {
      channel: sub.channel,
      epoch: reply.epoch,
      offset: reply.offset,
      recovering,
      recovered: recovering && reply.recovered === true,
      publications: pubs.length,
    });
    // The replay goes through the same dedupe as live messages, before any of them.
    for (const pub of pubs) {
      if (sub._seq !== seq) return; // a handler unsubscribed or resubscribed: the rest is not ours
      this._deliver(sub, pub, true);
    }
    // Live messages continue right after the channel's newest offset, also when the replay was cut short.
    if (sub._seq === seq && newest) sub.position = newest;
  }

  _onSubscribeError(sub, err) {
    sub._requestId = null;
    if (err.code === "disconnected" || err.code === "not_connected" || err.code === "closed") return; // `welcome` subscribes again
    if (err.code === "already_subscribed") {
      // After a resume the pushed `subscribed` normally came first: then this is success.
      if (sub.state !== "subscribed") this._resync(sub, "already_subscribed", true);
      return;
    }
    sub._events.emit("error", err);
    if (sub.state !== "subscribing") return;
    if (!RETRYABLE.has(err.code)) return this._end(sub, err.code);
    const seq = sub._seq;
    const delay = backoffDelay(sub._attempt++, this._minDelay, this._maxDelay, this._random);
    this._later(this._gen, delay, () => {
      // After a timeout the server may have subscribed us anyway: unsubscribe first.
      if (sub._seq === seq && sub._requestId === null) this._subscribe(sub, err.code === "timeout");
    });
  }

  /** A publication, live (`replay` false) or replayed: dedupe, detect lost state, store, then emit. */
  _deliver(sub, pub, replay) {
    const pos = sub.position;
    if (pos && pub.epoch === pos.epoch && pub.offset <= pos.offset) return; // already delivered
    if (!replay && pos && (pub.epoch !== pos.epoch || pub.offset > pos.offset + 1)) {
      return this._resync(sub, pub.epoch !== pos.epoch ? "epoch_changed" : "gap", true);
    }
    // Position first, so a handler that resubscribes recovers from after this one (centrifuge-js #425).
    sub.position = { epoch: pub.epoch, offset: pub.offset };
    const out = { channel: sub.channel, epoch: pub.epoch, offset: pub.offset, data: pub.data, user: pub.user ?? null, ts: pub.ts };
    if (replay) out.recovered = true;
    sub._events.emit("publication", out);
  }

  // ------------------------------------------------------------------ errors

  _handlerThrew(err, event, channel) {
    const where = channel ? `${channel} "${event}"` : `"${event}"`;
    if (event === "error" && !channel) return this._logger?.error?.(`realtime: an "error" handler threw`, err);
    this._report(new RealtimeError("handler", `A ${where} handler threw`, { cause: err }));
  }

  _report(err) {
    if (this._events.count("error")) this._events.emit("error", err);
    else this._logger?.warn?.("realtime:", err);
  }
}
