// Type declarations for realtime.js, the browser client of the realtime protocol (PROTOCOL §10).

export type ClientState = "disconnected" | "connecting" | "connected" | "closed";
export type SubscriptionState = "unsubscribed" | "subscribing" | "subscribed";

export interface Position {
  epoch: string;
  offset: number;
}

export interface User {
  /** The user's primary key: a number, or a string for a non-integer key (a UUID, say). */
  id: number | string;
  username: string;
}

export interface Publication {
  channel: string;
  epoch: string;
  offset: number;
  data: unknown;
  /** Publisher's user id (a number, or a string for a non-integer key); null when the server published. */
  user: number | string | null;
  /** Milliseconds since the Unix epoch. */
  ts: number;
  /** True when it came from the replay of a `subscribed` (recovery). */
  recovered?: true;
}

export interface StateEvent {
  state: ClientState;
  previous: ClientState;
  /** Close code that caused the change (the client's own 4004 when it judged the socket dead), or null. */
  code: number | null;
  reason: string;
  /** On `disconnected`: milliseconds until the next attempt. */
  delayMs?: number;
  /** On `connected`: whether the session was resumed. */
  resumed?: boolean;
}

export interface SubscribedEvent {
  channel: string;
  epoch: string;
  offset: number;
  /** The subscribe carried a position (recover). */
  recovering: boolean;
  /** The replay was complete; false means: reload your state some other way. */
  recovered: boolean;
  /** How many publications the replay carried. */
  publications: number;
}

export interface ClientOptions {
  /** Access token provider, called only when needed (first connect, after 4009 / 4501, on `expiring`, near `exp`).
   *  Return "" / null, or throw a RealtimeError with code "unauthorized", to say "logged out" (the client closes). */
  getToken?: () => string | null | Promise<string | null>;
  /** A fixed access token. With neither `token` nor `getToken` the client relies on the session cookie.
   *  The token goes to the server at the handshake, as the subprotocol `realtime.bearer.<token>` beside
   *  `realtime.v1` (never in the URL); one that cannot be a subprotocol goes in a first `auth` frame. */
  token?: string;
  /** Backoff bounds in ms (full jitter). Defaults 500 and 20000. */
  minDelay?: number;
  maxDelay?: number;
  /** Request timeout in ms, counted from the call (waiting for the connection included); also the
   *  time allowed between opening a socket and `welcome`. Default 10000. */
  requestTimeout?: number;
  /** Added to `welcome.heartbeat` for the liveness deadline, ms, default 10000. */
  heartbeatTimeout?: number;
  WebSocket?: { new (url: string, protocols?: string | string[]): WebSocket };
  now?: () => number;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (handle: unknown) => void;
  random?: () => number;
  /** Source of `online`; null to disable. */
  window?: EventTarget | null;
  /** Source of `visibilitychange` (reads `visibilityState`); null to disable. */
  document?: (EventTarget & { visibilityState?: string }) | null;
  logger?: Pick<Console, "warn" | "error" | "debug">;
}

export interface HistoryOptions {
  since?: Position;
  limit?: number;
}

export interface HistoryResult {
  channel: string;
  epoch: string;
  offset: number;
  publications: Publication[];
}

export interface PresenceResult {
  channel: string;
  members: Array<User & { connections: number }>;
}

export type RequestErrorCode = "not_connected" | "timeout" | "disconnected" | "closed";

export class RealtimeError extends Error {
  /**
   * A protocol error code (e.g. "permission_denied"), or "not_connected" (no connection within the request
   * timeout: never sent), "timeout" (sent, no reply in time), "disconnected" (sent, the connection ended
   * before the reply), "closed" (the client is closed), "handler", "token", "refresh", "bad_frame".
   */
  code: string | RequestErrorCode;
  /**
   * On a request's error: whether its frame left the client. false: nothing happened, safe to retry.
   * true with "timeout", "disconnected" or "closed": the outcome is unknown (a publish may have
   * happened: check `history`); true with a protocol code: the server refused it. Undefined on
   * errors that are not a request's.
   */
  sent?: boolean;
  constructor(code: string, message?: string, options?: { cause?: unknown; sent?: boolean });
}

export function backoffDelay(attempt: number, minDelay?: number, maxDelay?: number, random?: () => number): number;

export class Subscription {
  readonly channel: string;
  readonly state: SubscriptionState;
  /** Position of the last delivered publication. */
  readonly position: Position | null;
  on(event: "publication", fn: (pub: Publication) => void): () => void;
  on(event: "subscribed", fn: (ev: SubscribedEvent) => void): () => void;
  on(event: "subscribing", fn: (ev: { channel: string; reason: string }) => void): () => void;
  on(event: "join" | "leave", fn: (user: User) => void): () => void;
  on(event: "unsubscribed", fn: (ev: { channel: string; reason: string }) => void): () => void;
  on(event: "error", fn: (err: RealtimeError) => void): () => void;
  off(event: string, fn: (...args: any[]) => void): void;
  subscribe(): this;
  unsubscribe(): void;
}

export class Client {
  constructor(urlOrUrls?: string | string[], options?: ClientOptions);
  readonly state: ClientState;
  readonly session: string | null;
  readonly user: User | null;
  on(event: "state", fn: (ev: StateEvent) => void): () => void;
  on(event: "error", fn: (err: RealtimeError) => void): () => void;
  off(event: string, fn: (...args: any[]) => void): void;
  connect(): Promise<{ session: string | null; user: User | null; resumed: boolean }>;
  disconnect(): void;
  subscribe(channel: string): Subscription;
  publish(channel: string, data: unknown): Promise<{ channel: string; epoch: string; offset: number }>;
  history(channel: string, options?: HistoryOptions): Promise<HistoryResult>;
  presence(channel: string): Promise<PresenceResult>;
}
