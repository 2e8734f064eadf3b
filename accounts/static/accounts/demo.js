// The demo chat page (accounts/templates/accounts/demo.html) on the browser client ../realtime/realtime.js.
//
// Log in through the HTTP token API, keep the token pair in sessionStorage (refreshed
// before the access token expires; the refresh token rotates), then one Client on /ws/:
// the lobby and the user's rooms, history when entering a channel, presence kept up to
// date by join/leave, a connection badge, and messages recovered after a drop marked
// as such. Every user-provided string reaches the page through textContent only.
//
// A message being sent shows as pending until it is published; if that fails, the error says
// whether it was sent (PROTOCOL §10: the client's `err.sent`): never sent, it goes back to the
// input; sent without a reply, it stays marked until it shows up or history says it never came.
// Authors are the publication's server-set `user`, named from what the server told this page
// (welcome, presence, join), never from the message's `data`.

import { Client } from "../realtime/realtime.js";

const config = document.body.dataset;
const LOBBY = { channel: "public:lobby", name: "Lobby" };
const TOKENS_KEY = "realtime-demo:tokens";
const CHANNEL_KEY = "realtime-demo:channel";
const NAMES_KEY = "realtime-demo:names"; // user id -> username, as the server said (kept across reloads)
const REQUEST_TIMEOUT_MS = 10000; // the client's request timeout, said in "no connection within 10 s"
// Refresh the access token when it has less than this left: more than the server's REFRESH_LEAD
// (30 s by default), so that when the client asks for a token on `expiring` it gets a new one.
const REFRESH_MARGIN_S = 60;
const HISTORY_LIMIT = 50;
const GROUP_MS = 5 * 60 * 1000; // one author's messages this close together share an avatar
const KEEP_MESSAGES = 500; // per channel, the oldest go first

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// ------------------------------------------------------------------ HTTP

class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter; // seconds, from a 429's `Retry-After`
  }
}

/** "45 seconds", "2 minutes": how long `seconds` is, rounded up to a whole unit. */
function duration(seconds) {
  if (seconds < 60) return seconds === 1 ? "1 second" : `${seconds} seconds`;
  const minutes = Math.ceil(seconds / 60);
  return minutes === 1 ? "1 minute" : `${minutes} minutes`;
}

async function request(method, url, { body, access } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (access) headers.Authorization = `Bearer ${access}`;
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", // the token is the credential; no session cookie, no CSRF
    });
  } catch (err) {
    throw new ApiError(0, "network", "The server cannot be reached.");
  }
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok) {
    const retryAfter = Number.parseInt(response.headers.get("Retry-After") ?? "", 10);
    const message = json?.message ?? `HTTP ${response.status}`;
    throw new ApiError(response.status, json?.code ?? "http_error", message, retryAfter >= 0 ? retryAfter : null);
  }
  return json;
}

// ------------------------------------------------------------------ tokens

/** sessionStorage, best effort (it may be unavailable): `value` null removes the key. */
function store(key, value) {
  try {
    if (value === null) sessionStorage.removeItem(key);
    else sessionStorage.setItem(key, value);
  } catch {
    // Private modes may refuse storage: the page still works, it just forgets on reload.
  }
}

function stored(key) {
  try {
    return sessionStorage.getItem(key);
  } catch {
    return null;
  }
}

/** The claims of a JWT, read without verifying it; {} when unreadable. */
function jwtClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const payload = JSON.parse(atob(part.padEnd(Math.ceil(part.length / 4) * 4, "=")));
    return payload && typeof payload === "object" ? payload : {};
  } catch {
    return {};
  }
}

/** The `exp` claim (Unix seconds) of a JWT; 0 when unreadable. */
function jwtExp(token) {
  const { exp } = jwtClaims(token);
  return typeof exp === "number" ? exp : 0;
}

class Auth {
  constructor(onLost) {
    this.onLost = onLost; // called when the refresh token is refused: the user must sign in again
    this.refreshing = null;
    try {
      this.tokens = JSON.parse(stored(TOKENS_KEY) || "null");
    } catch {
      this.tokens = null;
    }
  }

  get signedIn() {
    return Boolean(this.tokens?.access && this.tokens?.refresh);
  }

  save(pair) {
    this.tokens = { access: pair.access, refresh: pair.refresh };
    store(TOKENS_KEY, JSON.stringify(this.tokens));
  }

  clear() {
    this.tokens = null;
    store(TOKENS_KEY, null);
  }

  async login(username, password) {
    this.save(await request("POST", config.tokenUrl, { body: { username, password } }));
  }

  /** A valid access token: the current one, or a fresh one when it is near its expiry. */
  async access() {
    if (!this.signedIn) throw new ApiError(401, "unauthorized", "Not signed in.");
    if (jwtExp(this.tokens.access) - Date.now() / 1000 > REFRESH_MARGIN_S) return this.tokens.access;
    // One refresh at a time: the refresh token rotates, a second use of the old one is refused.
    this.refreshing ??= this.refresh().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  async refresh() {
    const tokens = this.tokens;
    try {
      const pair = await request("POST", config.refreshUrl, { body: { refresh: tokens.refresh } });
      if (this.tokens !== tokens) throw new ApiError(401, "unauthorized", "Signed out meanwhile.");
      this.save(pair);
      return pair.access;
    } catch (err) {
      if (err.status === 401 && this.tokens === tokens) {
        this.clear();
        this.onLost("Your session has ended. Please sign in again.");
      }
      throw err;
    }
  }
}

// ------------------------------------------------------------------ connection badge

class Badge {
  constructor() {
    this.node = $("badge");
    this.text = $("badge-text");
    this.timer = null;
    this.everConnected = false;
  }

  show(state, text, title = "") {
    clearInterval(this.timer);
    this.timer = null;
    this.node.dataset.state = state;
    this.text.textContent = text;
    this.node.title = title;
  }

  /** Reflect one `state` event of the client. */
  update({ state, code, reason, delayMs, resumed }, session) {
    const cause = code ? `last close: ${code}${reason ? ` ${reason}` : ""}` : "";
    if (state === "connected") {
      this.everConnected = true;
      if (resumed) this.show("resumed", "Resumed", `Session ${session} resumed`);
      else this.show("connected", "Connected", session ? `Session ${session}` : "");
    } else if (state === "connecting") {
      this.show("connecting", this.everConnected ? "Reconnecting…" : "Connecting…", cause);
    } else if (state === "disconnected") {
      if (typeof delayMs === "number") this.countdown(Date.now() + delayMs, cause);
      else this.show("reconnecting", "Disconnected", cause);
    } else if (state === "closed") {
      this.show("closed", "Offline", cause);
    }
  }

  /** After a reconnect: say in the tooltip what the catch-up found (only once it knows). */
  caughtUp(session, resumed, { waiting, recovered, incomplete }) {
    let found;
    if (incomplete) found = "some missed messages could not be recovered";
    else if (waiting) found = recovered ? `${recovered} missed so far, catching up…` : "catching up…";
    else if (recovered) found = `${recovered} missed message${recovered === 1 ? "" : "s"} recovered`;
    else found = "nothing was missed";
    this.node.title = `Session ${session}${resumed ? " resumed" : ""}: ${found}`;
  }

  countdown(deadline, title) {
    this.show("reconnecting", "", title);
    const tick = () => {
      const seconds = Math.ceil((deadline - Date.now()) / 1000);
      this.text.textContent = seconds > 0 ? `Reconnecting in ${seconds} s` : "Reconnecting…";
    };
    tick();
    this.timer = setInterval(tick, 250);
  }
}

// ------------------------------------------------------------------ the chat

/** Whether publication `a` comes before `b`: by offset in one epoch, else by time. */
function before(a, b) {
  return a.epoch === b.epoch ? a.offset < b.offset : a.ts < b.ts;
}

function avatarColor(id) {
  const hue = (Number(id) * 137.508) % 360;
  return `hsl(${hue.toFixed(0)} 55% 48%)`;
}

function avatar(username, id) {
  const node = el("span", "avatar", (username || "?").slice(0, 1));
  node.style.background = avatarColor(id);
  node.setAttribute("aria-hidden", "true");
  return node;
}

function formatTime(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

class Chat {
  constructor() {
    this.badge = new Badge();
    this.auth = new Auth((message) => this.signOut(message));
    this.client = null;
    this.channels = new Map(); // channel -> its state, see channelState()
    this.rooms = "none"; // "loading", "loaded" or "failed" (tried again at the next connection)
    this.names = new Map(); // user id -> username, from welcome, presence and join (never from `data`)
    this.catchUp = null; // after a reconnect: {resumed, waiting: Set of channels, recovered, incomplete}
    this.sendError = null; // what #send-error shows: "offline" (cleared on reconnect), "unknown", "refused"
    this.active = null;
    this.bind();
    if (this.auth.signedIn) this.start();
    else this.showLogin();
  }

  bind() {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.signIn();
    });
    $("logout").addEventListener("click", () => this.logOut());
    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
  }

  // ---------------------------------------------------------------- sign in and out

  showLogin(message = "") {
    $("chat-view").hidden = true;
    $("whoami").hidden = true;
    $("login-view").hidden = false;
    $("login-error").textContent = message;
    $("login-error").hidden = !message;
    this.badge.show("idle", "Signed out");
    $("username").focus();
  }

  async signIn() {
    const form = $("login-form");
    const username = form.username.value.trim();
    const password = form.password.value;
    $("login-button").disabled = true;
    $("login-error").hidden = true;
    try {
      await this.auth.login(username, password);
      form.password.value = "";
      this.start();
    } catch (err) {
      let message = err.message;
      if (err.code === "unauthorized") message = "Wrong username or password.";
      else if (err.code === "rate_limited" && err.retryAfter !== null)
        message = `Too many attempts: try again in ${duration(err.retryAfter)}.`;
      else if (err.code === "rate_limited") message = "Too many attempts: wait a moment and try again.";
      $("login-error").textContent = message;
      $("login-error").hidden = false;
    } finally {
      $("login-button").disabled = false;
    }
  }

  /** Log out: close the socket, forget the tokens, then end the refresh token on the server. */
  async logOut(message = "") {
    const tokens = this.auth.tokens;
    this.stop();
    this.auth.clear();
    this.showLogin(message);
    if (!tokens) return;
    try {
      let pair = tokens;
      if (jwtExp(pair.access) - Date.now() / 1000 < 5) {
        // The logout call needs a live access token.
        pair = await request("POST", config.refreshUrl, { body: { refresh: pair.refresh } });
      }
      await request("POST", config.logoutUrl, { body: { refresh: pair.refresh }, access: pair.access });
    } catch {
      // Expired beyond refresh, or the server is down: the local sign-out stands either way.
    }
  }

  signOut(message) {
    this.stop();
    this.auth.clear();
    this.showLogin(message);
  }

  stop() {
    delete document.body.dataset.connection;
    const client = this.client;
    this.client = null;
    if (client) client.disconnect();
    this.channels.clear();
    this.names.clear();
    store(NAMES_KEY, null);
    this.catchUp = null;
    this.showSendError(null);
    this.rooms = "none";
    this.active = null;
    $("channels").replaceChildren();
    $("messages").replaceChildren();
    $("presence").replaceChildren();
  }

  // ---------------------------------------------------------------- the connection

  start() {
    $("login-view").hidden = true;
    $("chat-view").hidden = false;
    $("text").focus();
    this.loadNames();
    const url = new URL(config.wsPath, window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const options = { getToken: () => this.auth.access(), minDelay: 500, maxDelay: 20000, requestTimeout: REQUEST_TIMEOUT_MS };
    const client = new Client(url.href, options);
    this.client = client;
    client.on("state", (event) => this.onState(client, event));
    this.badge.show("connecting", "Connecting…");
    this.loadChannels(client);
    client.connect().then(
      () => {
        if (this.client !== client) return;
        const me = client.user;
        this.learnName(me.id, me.username);
        $("me").textContent = me.username;
        $("logout").title = `Log out ${me.username}`;
        $("whoami").hidden = false;
      },
      () => {}, // reported by the state event
    );
  }

  onState(client, event) {
    if (this.client !== client) return;
    const reconnected = event.state === "connected" && this.badge.everConnected;
    this.badge.update(event, client.session);
    document.body.dataset.connection = event.state; // presence dims while it may be stale
    if (event.state === "connected" && this.wrongUser(client)) return;
    if (event.state === "connected" && this.rooms === "failed") this.loadChannels(client);
    if (event.state === "connected" && this.sendError === "offline") this.showSendError(null); // stale now
    if (reconnected) this.startCatchUp(event.resumed === true);
    const active = this.channels.get(this.active);
    if (active?.pending.length) this.renderMessages(active); // "waiting for the connection" or "sending"
    if (event.state === "closed" && event.code >= 4500 && event.code <= 4999) {
      // Refused for good (revoked, unknown token, taken over by another tab): sign in again.
      const why = event.code === 4509 ? "This session was opened elsewhere." : "You have been signed out.";
      this.signOut(`${why} (${event.code}${event.reason ? ` ${event.reason}` : ""})`);
    }
  }

  /**
   * The server authenticates a socket by the Django session cookie before the token (PROTOCOL §2):
   * in a browser also signed in to the admin as someone else, the socket would be theirs. Refuse.
   */
  wrongUser(client) {
    const claimed = jwtClaims(this.auth.tokens?.access).user_id;
    if (claimed === undefined || !client.user || String(claimed) === String(client.user.id)) return false;
    this.logOut(
      `This browser is also signed in to Django as “${client.user.username}” (the admin's session cookie), ` +
        "and the socket took that session. Log out of the admin, or use a private window, then sign in here.",
    );
    return true;
  }

  /** The lobby and the user's rooms (`GET /api/realtime/rooms/`); enters one the first time. */
  async loadChannels(client) {
    const list = [LOBBY];
    let failure = null;
    this.rooms = "loading";
    try {
      const body = await request("GET", config.roomsUrl, { access: await this.auth.access() });
      list.push(...body.rooms);
    } catch (err) {
      failure = err;
    }
    if (this.client !== client) return;
    this.rooms = failure ? "failed" : "loaded";
    $("rooms-error").textContent = failure ? `Rooms unavailable: ${failure.message}` : "";
    $("rooms-error").hidden = !failure;
    for (const { channel, name } of list) this.channelState(channel, name);
    this.renderChannels();
    if (this.active) return;
    const wanted = stored(CHANNEL_KEY);
    this.enter(this.channels.has(wanted) ? wanted : LOBBY.channel);
  }

  channelState(channel, name) {
    let state = this.channels.get(channel);
    if (!state) {
      state = { channel, name, sub: null, messages: [], keys: new Set(), members: new Map(), unread: 0, history: false, pending: [] };
      this.channels.set(channel, state);
    }
    return state;
  }

  // ---------------------------------------------------------------- channels

  renderChannels() {
    const items = [];
    for (const state of this.channels.values()) {
      const button = el("button", "channel");
      button.type = "button";
      button.dataset.channel = state.channel;
      button.setAttribute("aria-current", String(state.channel === this.active));
      button.append(el("span", "sigil", state.channel.startsWith("room:") ? "#" : "@"), el("span", "label", state.name));
      if (state.unread) button.append(el("span", "unread", String(state.unread)));
      button.addEventListener("click", () => this.enter(state.channel));
      const item = el("li");
      item.append(button);
      items.push(item);
    }
    $("channels").replaceChildren(...items);
  }

  /** Show a channel: subscribe on first entry (kept afterwards), load its history, read its presence. */
  enter(channel) {
    const state = this.channels.get(channel);
    if (!state || !this.client) return;
    this.active = channel;
    state.unread = 0;
    store(CHANNEL_KEY, channel);
    $("channel-title").textContent = state.name;
    $("channel-name").textContent = channel;
    $("text").placeholder = `Message ${state.name}`;
    this.notice(state.notice);
    this.renderChannels();
    this.renderMessages(state);
    this.renderPresence(state);
    if (!state.sub) this.subscribe(state);
    if (!state.history) this.loadHistory(state);
    this.loadPresence(state);
    $("text").focus(); // ready to type in the channel just chosen
  }

  subscribe(state) {
    const sub = this.client.subscribe(state.channel);
    state.sub = sub;
    sub.on("publication", (pub) => {
      if (pub.recovered && this.catchUp) this.catchUp.recovered += 1;
      this.add(state, pub, true);
      if (pub.recovered) this.showCatchUp();
    });
    sub.on("subscribed", ({ recovering, recovered }) => {
      if (this.catchUp?.waiting.has(state.channel)) {
        if (recovering && recovered === false) this.catchUp.incomplete = true;
        // The replay is delivered right after this event: count it first, then say what was found.
        queueMicrotask(() => {
          this.catchUp?.waiting.delete(state.channel);
          this.showCatchUp();
        });
      }
      if (state.pending.some((item) => item.status === "unknown")) this.verify(state);
      if (recovering && recovered === false) {
        // The gap could not be filled from history: reload the latest messages instead.
        this.setNotice(state, "Some messages could not be recovered; showing the latest ones.");
        this.loadHistory(state);
      } else if (!state.history) {
        this.loadHistory(state); // it failed while the connection was down
      }
      this.loadPresence(state); // join/leave may have been missed while away
    });
    sub.on("join", (user) => {
      this.learnName(user.id, user.username);
      state.members.set(user.id, { ...user, ...state.members.get(user.id) });
      if (state.channel === this.active) this.renderPresence(state);
    });
    sub.on("leave", (user) => {
      state.members.delete(user.id);
      if (state.channel === this.active) this.renderPresence(state);
    });
    sub.on("unsubscribed", ({ reason }) => {
      if (reason === "removed") this.setNotice(state, "You are no longer a member of this channel.");
    });
    sub.on("error", (err) => this.setNotice(state, `Channel error: ${err.code ?? ""} ${err.message ?? err}`));
  }

  async loadHistory(state) {
    state.history = true;
    const client = this.client;
    try {
      const { publications } = await client.history(state.channel, { limit: HISTORY_LIMIT });
      if (this.client !== client) return;
      for (const pub of publications) this.add(state, pub, false);
      if (state.notice?.startsWith("History unavailable")) this.setNotice(state, "");
    } catch (err) {
      state.history = false; // try again on the next entry
      this.setNotice(state, `History unavailable: ${err.message}`);
    }
  }

  async loadPresence(state) {
    const client = this.client;
    try {
      const { members } = await client.presence(state.channel);
      if (this.client !== client) return;
      state.members = new Map(members.map((member) => [member.id, member]));
      for (const member of members) this.learnName(member.id, member.username);
      if (state.channel === this.active) this.renderPresence(state);
    } catch {
      // Presence is a nicety; join/leave keep the list going.
    }
  }

  setNotice(state, text) {
    state.notice = text;
    if (state.channel === this.active) this.notice(text);
  }

  notice(text) {
    $("channel-notice").textContent = text || "";
    $("channel-notice").hidden = !text;
  }

  // ---------------------------------------------------------------- presence

  renderPresence(state) {
    const me = this.client?.user?.id;
    const members = [...state.members.values()].sort((a, b) => a.username.localeCompare(b.username));
    const items = members.map((member) => {
      const item = el("li");
      item.dataset.user = String(member.id);
      item.append(avatar(member.username, member.id), el("span", "name", member.username));
      if (member.id === me) item.append(el("span", "you", "(you)"));
      item.append(el("span", "online"));
      return item;
    });
    $("presence").replaceChildren(...items);
    $("presence-count").textContent = members.length ? String(members.length) : "";
  }

  // ---------------------------------------------------------------- messages

  /** Add a publication once (by epoch and offset), in order; `live` ones count as unread elsewhere. */
  add(state, pub, live) {
    const key = `${pub.epoch}/${pub.offset}`;
    if (state.keys.has(key)) return;
    state.keys.add(key);
    if (pub.user !== null && pub.user === this.client?.user?.id) this.settle(state, pub.data?.nonce);
    let index = state.messages.length;
    while (index > 0 && before(pub, state.messages[index - 1])) index -= 1;
    state.messages.splice(index, 0, pub);
    if (state.messages.length > KEEP_MESSAGES) state.messages.shift(); // its key stays: it will not come back
    if (state.channel === this.active) {
      this.renderMessages(state);
    } else if (live) {
      state.unread += 1;
      this.renderChannels();
    }
  }

  renderMessages(state) {
    const list = $("messages");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    let previous = null;
    const items = state.messages.map((pub) => {
      const item = this.messageItem(pub);
      if (pub.recovered && !previous?.recovered) item.classList.add("recovered-first");
      else if (previous && previous.user === pub.user && pub.ts - previous.ts < GROUP_MS) item.classList.add("cont");
      previous = pub;
      return item;
    });
    for (const pending of state.pending) items.push(this.pendingItem(pending));
    list.replaceChildren(...items);
    $("empty").hidden = items.length > 0;
    const mineLast = state.pending.length > 0 || state.messages.at(-1)?.user === this.client?.user?.id;
    if (atBottom || mineLast) list.scrollTop = list.scrollHeight;
  }

  /** Who published: the server-set `user`, by the name the server gave this page. Never `data`. */
  author(pub) {
    if (pub.user === null || pub.user === undefined) return "server";
    return this.names.get(pub.user) ?? `user #${pub.user}`;
  }

  /** A name the server told us (welcome, presence, join): kept, and shown on that user's messages. */
  learnName(id, username) {
    if (this.names.get(id) === username) return;
    this.names.set(id, username);
    store(NAMES_KEY, JSON.stringify([...this.names]));
    const state = this.channels.get(this.active);
    if (state?.messages.some((pub) => pub.user === id)) this.renderMessages(state);
  }

  loadNames() {
    try {
      for (const [id, username] of JSON.parse(stored(NAMES_KEY) || "[]")) this.names.set(id, username);
    } catch {
      store(NAMES_KEY, null);
    }
  }

  messageItem(pub) {
    const mine = pub.user !== null && pub.user === this.client?.user?.id;
    const item = el("li", "msg");
    item.dataset.offset = String(pub.offset);
    item.classList.toggle("mine", mine);
    item.classList.toggle("server", pub.user === null);
    item.classList.toggle("recovered", pub.recovered === true);
    const name = this.author(pub);
    if (!mine) item.append(avatar(name, pub.user ?? 0));
    const bubble = el("div", "bubble");
    const meta = el("div", "meta");
    meta.append(el("span", "author", mine ? "You" : name));
    const time = el("time", "", formatTime(pub.ts));
    time.dateTime = new Date(pub.ts).toISOString();
    meta.append(time);
    if (pub.recovered) {
      const tag = el("span", "tag", "recovered");
      tag.title = "Published while this page was disconnected; delivered on reconnect";
      meta.append(tag);
    }
    const text = pub.data && typeof pub.data.text === "string" ? pub.data.text : null;
    const body = el("div", text === null ? "text json" : "text", text ?? JSON.stringify(pub.data));
    bubble.append(meta, body);
    item.append(bubble);
    return item;
  }

  pendingItem(pending) {
    const item = el("li", "msg mine pending");
    item.classList.toggle("unknown", pending.status === "unknown");
    const bubble = el("div", "bubble");
    const meta = el("div", "meta");
    let status = "No reply: may have been sent";
    if (pending.status === "sending") status = this.client?.state === "connected" ? "Sending…" : "Waiting for the connection…";
    meta.append(el("span", "author", "You"), el("span", "status", status));
    bubble.append(meta, el("div", "text", pending.text));
    item.append(bubble);
    return item;
  }

  /** Publish the input's text; meanwhile it shows as pending (the nonce finds it when it arrives). */
  async send() {
    const input = $("text");
    const text = input.value.trim();
    const state = this.channels.get(this.active);
    const client = this.client;
    if (!text || !state || !client) return;
    input.value = "";
    if (this.sendError !== "unknown") this.showSendError(null);
    const pending = { nonce: nonce(), text, status: "sending" };
    state.pending.push(pending);
    this.renderIfActive(state);
    try {
      await client.publish(state.channel, { text, nonce: pending.nonce });
      this.settle(state, pending.nonce); // published: the message itself shows (or already did)
    } catch (err) {
      if (this.client === client && state.pending.includes(pending)) this.sendFailed(state, pending, err);
    }
  }

  /**
   * PROTOCOL §10: never sent (or refused by the server) -> back to the input; sent without a reply ->
   * it may have been published: keep it marked and look for it.
   */
  sendFailed(state, pending, err) {
    if (err.sent === true && ["timeout", "disconnected", "closed"].includes(err.code)) {
      pending.status = "unknown";
      this.renderIfActive(state);
      this.showSendError(
        "unknown",
        "Sent, but no reply yet: it may have been published. It stays marked until it shows up; " +
          "if the server never got it, it comes back to the input.",
      );
      this.verify(state);
      return;
    }
    let why = err.code;
    if (err.code === "not_connected") why = `no connection within ${REQUEST_TIMEOUT_MS / 1000} s`;
    else if (err.code === "closed") why = "offline";
    const offline = err.sent === false;
    const advice = offline ? "your message is back in the box, send it again." : err.message;
    this.giveBack(state, pending, offline ? "offline" : "refused", `Not sent (${why}): ${advice}`);
  }

  /** Whether messages whose outcome is unknown reached the channel: history says; those absent come back. */
  async verify(state) {
    const asked = state.pending.filter((item) => item.status === "unknown");
    if (!asked.length || state.verifying) return;
    state.verifying = true;
    const client = this.client;
    try {
      const { publications } = await client.history(state.channel, { limit: HISTORY_LIMIT });
      if (this.client !== client) return;
      for (const pub of publications) this.add(state, pub, false); // settles the ones found
      for (const pending of asked) {
        if (!state.pending.includes(pending)) continue;
        this.giveBack(state, pending, "offline", "Not sent (the server never got it): your message is back in the box, send it again.");
      }
    } catch {
      // No answer now: the channel's next `subscribed` (after a reconnect) looks again.
    } finally {
      state.verifying = false;
    }
  }

  /** A pending message that arrived or was published: it is a message now. */
  settle(state, key) {
    const index = state.pending.findIndex((item) => item.nonce === key);
    if (index < 0) return;
    state.pending.splice(index, 1);
    this.renderIfActive(state);
    const unknown = [...this.channels.values()].some((s) => s.pending.some((item) => item.status === "unknown"));
    if (this.sendError === "unknown" && !unknown) this.showSendError(null);
  }

  giveBack(state, pending, kind, message) {
    state.pending.splice(state.pending.indexOf(pending), 1);
    this.renderIfActive(state);
    const input = $("text");
    if (!input.value) input.value = pending.text;
    this.showSendError(kind, message);
  }

  showSendError(kind, message = "") {
    this.sendError = kind;
    $("send-error").textContent = kind ? message : "";
    $("send-error").hidden = !kind;
  }

  renderIfActive(state) {
    if (state.channel === this.active) this.renderMessages(state);
  }

  // ---------------------------------------------------------------- after a reconnect

  startCatchUp(resumed) {
    const subscribed = [...this.channels.values()].filter((s) => s.sub && s.sub.state !== "unsubscribed");
    const waiting = new Set(subscribed.map((s) => s.channel));
    this.catchUp = { resumed, waiting, recovered: 0, incomplete: false };
    this.showCatchUp();
  }

  showCatchUp() {
    const c = this.catchUp;
    if (!c || !this.client || this.client.state !== "connected") return;
    this.badge.caughtUp(this.client.session, c.resumed, { waiting: c.waiting.size, recovered: c.recovered, incomplete: c.incomplete });
  }
}

/** A random tag for a message this page sends, so that it can be recognised when it arrives. */
function nonce() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

window.realtimeDemo = new Chat();
