"""The Redis engine: history and presence shared by every server process.

Per channel (all keys from `RedisEngine.key`):

- `<prefix>:m:<channel>` hash `{epoch, offset, server, bytes}`: the stream's position, the
  Redis server instance (`run_id`) that minted the epoch or last vouched for it, and the
  UTF-8 bytes its history list holds.
- `<prefix>:server` string: this server instance's `run_id`, deleted by each new connection
  (`RedisEngine` connection hook) and written again by the next stream script. A hash
  stamped by another instance gets a new epoch: the data may have been rolled back
  (restarted from an older snapshot, failed over to a replica that lagged).
- `<prefix>:h:<channel>` list of publication texts, newest first, trimmed to the
  history size and to its bytes (`history_bytes`). Offsets are contiguous, so the publication
  with offset `o` sits at index `top - o`; reading "everything after `o`" is one LRANGE.
- Both expire `ttl` seconds after the last publication. When the hash is gone
  (expired, flushed, a Redis restarted without persistence) the next call creates
  a new epoch, so clients holding old positions learn that history was lost.
- `<prefix>:s:<session>` hash: a session's record for resume, `~o` its owner (the
  channel name of the socket holding it), `~u` its user, and one field per subscribed
  channel holding `[epoch, offset]` as JSON (channel names never start with `~`).
  Written at subscribe and unsubscribe, refreshed by the owner's beat, kept
  RESUME_WINDOW seconds after its socket went away, taken over by the socket that
  resumes it.
- `<prefix>:q:<user>` string `"<tokens> <stamp>"`: the user's publish quota (PUBLISH_BYTES_PER_SECOND), a
  token bucket charged by the publish script itself (no round trip of its own), shared by the user's
  sockets and HTTP requests on every process; it expires once it would be full again.
- `<prefix>:r:<user>` string `"<tokens> <stamp>"`: the user's connects (CONNECT_RATE, CONNECT_BURST), a
  token bucket by Redis's clock (the same as the quota's); it expires once it would be full again.
- `<prefix>:c:<user>` sorted set slot -> expiry (ms): the user's live sockets, for
  MAX_CONNECTIONS_PER_USER. Admitting prunes lapsed slots and adds one under the limit in
  one script; each process renews its sockets' slots every NODE_HEARTBEAT, so the slots
  of a process that died lapse after three beats.
- `<prefix>:f<db>:<channel>` pub/sub channel (`<db>` the database number: pub/sub is
  server-wide): the fan-out events of the channel (each publication,
  sent by the same script that stores it, and presence changes), which each process hears
  once on its own listener connection (`RedisListener`, client name `<prefix>:fanout`) for
  the channels it serves.
- `<prefix>:pz:<channel>` sorted set session -> expiry (ms), `<prefix>:pi:<channel>`
  hash session -> user JSON, `<prefix>:pc:<channel>` hash user id -> connections:
  presence. Each live process extends its entries every NODE_HEARTBEAT, so the
  entries of a process that died lapse on their own and are pruned (with `leave`);
  the keys themselves expire one presence lifetime after their newest entry lapses.

Every update is one Lua script, so it is atomic across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from realtime.core.frames import splice_position, ts_of
from realtime.engine.base import (
    REVOCATION_TTL,
    Engine,
    Listener,
    OverQuota,
    Position,
    PresenceChange,
    Published,
    Quota,
    SessionWrite,
    Slice,
    TakenSession,
    count_members,
    new_epoch,
)
from realtime.engine.pool import redis_client

logger = logging.getLogger(__name__)

POSITIONS_BATCH = 1000  # channels per POSITIONS call: one round trip usually, never one long script

# The stream's epoch, bound to the Redis server instance that holds the data. KEYS[1] meta,
# KEYS[2] list; `server_key` (`<prefix>:server`) names the instance: its INFO `run_id`, written
# by the first script after every connection's `RedisEngine.on_connect` deleted it (a restarted
# or failed-over server is reached on new connections only, so a stale name from a snapshot is
# gone before any script reads it). A channel stamped by another instance may have been rolled
# back (restarted from an older snapshot, a replica that lagged), so it gets a new epoch from
# `candidate` and its offsets start again, exactly as a channel whose hash is gone.
# stored(meta_key, server) -> epoch, newest offset; false, 0 when there is none this server vouches for.
# stream(server_key, candidate) -> epoch, newest offset, created (true when minted now).
_STREAM = """
local function this_server(server_key)
  if string.find(server_key, ':!:', 1, true) then  -- a Cluster (realtime.engine.cluster): never cached
    return string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
  end
  local server = redis.call('GET', server_key)
  if not server then
    server = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
    redis.call('SET', server_key, server)
  end
  return server
end
local function stored(meta_key, server)
  local meta = redis.call('HMGET', meta_key, 'epoch', 'offset', 'server')
  if meta[1] and meta[3] == server then return meta[1], tonumber(meta[2]) end
  return false, 0
end
local function stream(server_key, candidate)
  local server = this_server(server_key)
  local epoch, top = stored(KEYS[1], server)
  if epoch then return epoch, top, false end
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', candidate, 'offset', 0, 'server', server, 'bytes', 0)
  return candidate, 0, true
end
"""

# A token bucket per key by Redis's clock (so every process agrees), for the publish quota and the
# connect rate. take(key, amount, rate, burst): spend `amount` from the bucket kept in `key` as
# "<tokens> <stamp in microseconds>" until it would be full again; 0 when taken, else the
# microseconds until `amount` would fit (nothing written). An amount over the burst passes from a
# full bucket and leaves it owing, rather than never passing.
_BUCKET = """
local function take(key, amount, rate, burst)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local tokens = burst
  local bucket = redis.call('GET', key)
  if bucket then
    local left, stamp = string.match(bucket, '(%S+) (%S+)')
    tokens = math.min(burst, tonumber(left) + (now - tonumber(stamp)) * rate / 1000000)
  end
  local need = math.min(amount, burst)
  if tokens < need then return math.max(1, math.ceil((need - tokens) * 1000000 / rate)) end
  tokens = tokens - amount
  redis.call('SET', key, string.format('%.6f %d', tokens, now), 'PX', math.ceil((burst - tokens) * 1000 / rate) + 1)
  return 0
end
"""

# KEYS: meta, list, fan-out channel, server, quota. ARGV: epoch candidate, size, ttl, head, tail, ts,
# max_bytes (0: no bound), quota rate (bytes per second, one second's worth at once; 0: no quota).
# The quota first: over it, {false, the microseconds until it fits}, and nothing is written. Then
# the history, trimmed by count and by bytes (the list's UTF-8 bytes are kept in the meta hash's
# `bytes`, 0 when minted; a list written before `bytes` existed is counted once), oldest first,
# the newest always kept.
# The fan-out event (realtime.core.frames.publication_event) is published in the same script,
# so the events of a channel go out in offset order whoever publishes.
PUBLISH = (
    _STREAM
    + _BUCKET
    + """
local rate = tonumber(ARGV[8])
if rate > 0 then
  local wait = take(KEYS[5], #ARGV[4] + #ARGV[5], rate, rate)
  if wait > 0 then return {false, wait} end
end
local epoch = stream(KEYS[4], ARGV[1])
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local text = ARGV[4] .. '"epoch":"' .. epoch .. '","offset":' .. offset .. ARGV[5]
local size = tonumber(ARGV[2])
if size > 0 then
  local budget = tonumber(ARGV[7])
  local bytes = tonumber(redis.call('HGET', KEYS[1], 'bytes') or -1)
  if bytes < 0 then
    bytes = 0
    for _, item in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do bytes = bytes + #item end
  end
  local kept = redis.call('LPUSH', KEYS[2], text)
  bytes = bytes + #text
  while kept > 1 and (kept > size or (budget > 0 and bytes > budget)) do
    bytes = bytes - #redis.call('RPOP', KEYS[2])
    kept = kept - 1
  end
  redis.call('HSET', KEYS[1], 'bytes', bytes)
end
local frame = '{"type":"message",' .. string.sub(text, 2)
local fanout = string.find(KEYS[4], ':!:', 1, true) and 'SPUBLISH' or 'PUBLISH'  -- a Cluster: sharded
redis.call(fanout, KEYS[3], 'm' .. epoch .. ' ' .. offset .. ' ' .. ARGV[6] .. ' ' .. frame)
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
end
return {epoch, offset}
"""
)

# KEYS: meta, list, server. ARGV: epoch candidate, ttl, mode ("pos" | "since" | "recent" | "latest"), epoch,
# offset, limit (-1: none), max_bytes (0: none). Returns {epoch, top, complete, items newest first}.
# take(): the list read CHUNK items at a time, stopping at `limit` items or before `budget` bytes
# (the first item always), so a bounded read never loads the whole list into the script's memory.
READ = (
    _STREAM
    + """
local epoch, top, created = stream(KEYS[3], ARGV[1])
if created and tonumber(ARGV[2]) > 0 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2])) end
local mode = ARGV[3]
if mode == 'pos' then return {epoch, top, 1, {}} end
local CHUNK = 32
-- Up to `count` items from index `first` by `step` (1: toward older, -1: toward newer), in that
-- order; and 1 when all `count` came.
local function take(first, count, step, limit, budget)
  local items, bytes, i = {}, 0, 0
  while i < count do
    local n = math.min(CHUNK, count - i)
    local a, b = first + step * i, first + step * (i + n - 1)
    local chunk = redis.call('LRANGE', KEYS[2], math.min(a, b), math.max(a, b))
    local from, to = 1, #chunk
    if step < 0 then from, to = #chunk, 1 end
    for k = from, to, step do
      local item = chunk[k]
      if (limit >= 0 and #items >= limit) or (budget > 0 and #items > 0 and bytes + #item > budget) then
        return items, 0
      end
      items[#items + 1] = item
      bytes = bytes + #item
    end
    i = i + n
  end
  return items, 1
end
local limit, budget = tonumber(ARGV[6]), tonumber(ARGV[7])
if mode == 'latest' then
  return {epoch, top, 1, (take(0, math.min(limit, redis.call('LLEN', KEYS[2])), 1, -1, budget))}
end
local since = tonumber(ARGV[5])
-- A replay ('recent') from a lost epoch holds the current epoch from its first, and is never complete.
local lost = ARGV[4] ~= epoch
if lost and mode == 'recent' then since = 0 elseif lost or since > top then return {epoch, top, 0, {}} end
local want = top - since
local kept = math.min(want, redis.call('LLEN', KEYS[2]))  -- index kept - 1 holds the oldest one after `since`
local items, all
if mode == 'recent' then
  items, all = take(0, kept, 1, limit, budget)
else
  local oldest
  oldest, all = take(kept - 1, kept, -1, limit, budget)
  items = {}
  for k = #oldest, 1, -1 do items[#items + 1] = oldest[k] end
end
local complete = 0
if all == 1 and kept == want and not lost then complete = 1 end
return {epoch, top, complete, items}
"""
)

# KEYS: server, then each channel's meta. Returns {epoch, offset, ...} per channel, epoch false where
# there is no stream this server vouches for. Writes nothing of the channels (the delivery check).
POSITIONS = (
    _STREAM
    + """
local server = this_server(KEYS[1])
local result = {}
for i = 2, #KEYS do
  local epoch, top = stored(KEYS[i], server)
  result[#result + 1] = epoch
  result[#result + 1] = top
end
return result
"""
)

# Presence helpers shared by the scripts below. KEYS: pz, pi, pc.
# user_key(user): the `pc` field of a user JSON, its id as text. An integer id is read as its digits
# (`presence_add` writes `{"id": 7, ...}` first): cjson reads numbers as doubles, which are exact only
# up to 2^53 and would merge two users with larger ids (BigAutoField, snowflake keys) into one.
# remove(session, left): drop one session; when it was its user's last, add the user to `left`.
# prune(now): remove every session whose expiry has passed; returns the users who left.
_PRESENCE = """
local function user_key(user)
  return string.match(user, '^{"id": (%-?%d+),') or cjson.decode(user)['id']
end
local function remove(session, left)
  local user = redis.call('HGET', KEYS[2], session)
  if redis.call('ZREM', KEYS[1], session) == 0 then return end
  redis.call('HDEL', KEYS[2], session)
  if user then
    local uid = user_key(user)
    if redis.call('HINCRBY', KEYS[3], uid, -1) <= 0 then
      redis.call('HDEL', KEYS[3], uid)
      table.insert(left, user)
    end
  end
end
local function prune(now)
  local left = {}
  for _, session in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
    remove(session, left)
  end
  return left
end
"""

# ARGV: now, session, user JSON, expiry, keys' expiry. Returns {joined (0/1), left...}.
# The keys expire a while after their newest entry would lapse (extended by every add and
# touch), so the presence of a channel nobody comes back to does not stay in Redis for ever.
PRESENCE_ADD = (
    _PRESENCE
    + """
local left = prune(ARGV[1])
local joined = 0
if redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  local uid = user_key(ARGV[3])
  if redis.call('HINCRBY', KEYS[3], uid, 1) == 1 then joined = 1 end
end
for i = 1, 3 do redis.call('PEXPIREAT', KEYS[i], ARGV[5]) end
return {joined, left}
"""
)

# ARGV: now, session.
PRESENCE_REMOVE = (
    _PRESENCE
    + """
local left = prune(ARGV[1])
remove(ARGV[2], left)
return {0, left}
"""
)

# ARGV: now.
PRESENCE_PRUNE = (
    _PRESENCE
    + """
return {0, prune(ARGV[1])}
"""
)

# ARGV: now. Prunes, then lists the live sessions' users: {left users, live users}.
PRESENCE_SNAPSHOT = (
    _PRESENCE
    + """
local left = prune(ARGV[1])
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
if #live == 0 then return {left, {}} end
return {left, redis.call('HMGET', KEYS[2], unpack(live))}
"""
)


# KEYS: session. ARGV: owner, user, ttl (ms), then channel, value pairs ('' removes the channel).
# Returns 1 when written, 0 when another socket owns the session.
SESSION_WRITE = """
local owner = redis.call('HGET', KEYS[1], '~o')
if owner and owner ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], '~o', ARGV[1], '~u', ARGV[2])
for i = 4, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: session. ARGV: new owner, user, ttl (ms). Returns the record's fields before the take, or nil.
SESSION_TAKE = """
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return false end
redis.call('DEL', KEYS[1])
local user = false
for i = 1, #fields, 2 do
  if fields[i] == '~u' then user = fields[i + 1] end
end
if user ~= ARGV[2] then return false end
redis.call('HSET', KEYS[1], '~o', ARGV[1], '~u', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return fields
"""

# KEYS: session. ARGV: owner.
SESSION_DELETE = """
if redis.call('HGET', KEYS[1], '~o') == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""

# Connection slots (MAX_CONNECTIONS_PER_USER). KEYS: the user's sorted set slot -> expiry (ms).
# Redis's own clock (TIME, allowed before writes with effect replication, the default since
# Redis 5), so every process agrees on what has lapsed. The key lives as long as its latest slot.
_SLOTS = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function keep_key()
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if #last == 2 then redis.call('PEXPIREAT', KEYS[1], last[2]) end
end
-- KEYS[1]: the user's slots. Lapsed slots go first; a slot already held is renewed. 1: admitted, 0: at the limit.
local function admit_slot(slot, limit, ttl)
  local now = now_ms()
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  if not redis.call('ZSCORE', KEYS[1], slot) and redis.call('ZCARD', KEYS[1]) >= limit then
    return 0
  end
  redis.call('ZADD', KEYS[1], now + ttl, slot)
  keep_key()
  return 1
end
"""

# ARGV: slot, limit, ttl (ms). Returns 1 when admitted (a slot already held is renewed), 0 at the limit.
SLOT_ADMIT = _SLOTS + "return admit_slot(ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))\n"

# ARGV: ttl (ms), then slots. Renews the slots still there (XX: a released one is not brought back).
SLOT_TOUCH = (
    _SLOTS
    + """
local expiry = now_ms() + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i])
end
keep_key()
return 0
"""
)


# KEYS: the user's slots, the user's connect bucket. ARGV: slot, limit, ttl (ms), rate, burst.
# CONNECT_TAKE then SLOT_ADMIT in one round trip: 0 admitted, 1 over the rate (nothing else
# written), 2 at the limit (the connect counted, no slot taken).
ADMIT = (
    _BUCKET
    + _SLOTS
    + """
if take(KEYS[2], 1, tonumber(ARGV[4]), tonumber(ARGV[5])) > 0 then return 1 end
if admit_slot(ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])) == 0 then return 2 end
return 0
"""
)

# KEYS: the user's connect bucket. ARGV: rate (per second), burst. Returns 1 when a connect was
# taken, 0 over the rate (nothing written).
CONNECT_TAKE = (
    _BUCKET
    + """
if take(KEYS[1], 1, tonumber(ARGV[1]), tonumber(ARGV[2])) > 0 then return 0 end
return 1
"""
)

# The publish quota on its own (a Cluster, where the user's bucket and the channel live in different
# slots): KEYS[1] the bucket, ARGV amount, rate. Returns 0 when taken, else the microseconds to wait.
QUOTA_TAKE = (
    _BUCKET
    + """
return take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[2]))
"""
)


def session_args(write: SessionWrite, ttl_ms: int) -> list[Any]:
    """The SESSION_WRITE script's arguments for `write`: owner, user, ttl, then channel and position pairs."""
    args: list[Any] = [write.owner, write.user, ttl_ms]
    for channel, position in write.changes.items():
        args += [channel, "" if position is None else json.dumps(position, separators=(",", ":"))]
    return args


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _users(raw: list) -> list[dict[str, Any]]:
    """Users as the presence scripts return them (JSON texts), decoded; missing entries skipped."""
    return [json.loads(_text(user)) for user in raw if user is not None]


# A revocation time, kept if it is the latest: KEYS[1] `<prefix>:rv:<user>`; ARGV: µs, ttl (s).
REVOKE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local at = tonumber(ARGV[1])
if at > current then current = at end
redis.call('SET', KEYS[1], string.format('%d', current), 'EX', tonumber(ARGV[2]))
return current
"""


class RedisEngine(Engine):
    """History and presence in Redis, shared by every process."""

    def __init__(self, url: str, prefix: str = "rt") -> None:
        self.prefix = prefix
        self.server_key = f"{prefix}:server"
        self.redis = self._client(url)
        self.db = self._db()
        self._publish = self.redis.register_script(PUBLISH)
        self._read = self.redis.register_script(READ)
        self._positions = self.redis.register_script(POSITIONS)
        self._presence_add = self.redis.register_script(PRESENCE_ADD)
        self._presence_remove = self.redis.register_script(PRESENCE_REMOVE)
        self._presence_prune = self.redis.register_script(PRESENCE_PRUNE)
        self._presence_snapshot = self.redis.register_script(PRESENCE_SNAPSHOT)
        self._session_write = self.redis.register_script(SESSION_WRITE)
        self._session_take = self.redis.register_script(SESSION_TAKE)
        self._session_delete = self.redis.register_script(SESSION_DELETE)
        self._slot_admit = self.redis.register_script(SLOT_ADMIT)
        self._slot_touch = self.redis.register_script(SLOT_TOUCH)
        self._connect_take = self.redis.register_script(CONNECT_TAKE)
        self._revoke = self.redis.register_script(REVOKE)
        self._admit = self.redis.register_script(ADMIT)
        self.listeners: set[RedisListener] = set()

    def _client(self, url: str) -> Any:
        return redis_client(url, redis_connect_func=self._on_connect)

    def _db(self) -> int:
        return int(self.redis.connection_pool.connection_kwargs.get("db") or 0)

    def key(self, kind: str, channel: str) -> str:
        """The one place Redis keys are made: `<prefix>:<kind>:<channel>`."""
        return f"{self.prefix}:{kind}:{channel}"

    def server_key_of(self, channel: str) -> str:
        """The key that caches which server instance holds `channel`'s stream (one for every channel here)."""
        return self.server_key

    def _stream_keys(self, channel: str) -> list[str]:
        return [self.key("m", channel), self.key("h", channel)]

    async def _on_connect(self, connection: aioredis.Connection) -> None:
        """Every new connection forgets which server instance holds the data, before its first command.

        A restarted (maybe rolled back) or failed-over Redis is only ever reached on new
        connections, and its data may still name the instance of the snapshot: deleted here,
        the name is read afresh (INFO) by the next stream script, which then gives a channel
        stamped by another instance a new epoch. Nothing cached in this process can vouch for
        the data, and the publish path stays one script call.
        """
        await connection.on_connect()
        await connection.send_command("DEL", self.server_key)
        await connection.read_response()

    def _presence_keys(self, channel: str) -> list[str]:
        return [self.key("pz", channel), self.key("pi", channel), self.key("pc", channel)]

    async def publish(
        self, channel: str, head: str, tail: str, *, size: int, ttl: int, max_bytes: int = 0, quota: Quota | None = None
    ) -> Published:
        # One round trip: the quota is charged by the script that stores and sends the publication.
        server_key = self.server_key_of(channel)
        keys = [*self._stream_keys(channel), self.fanout_key(channel), server_key]
        keys.append(self.key("q", quota.key) if quota is not None else server_key)  # (unused without one)
        rate = quota.rate if quota is not None else 0
        args = [new_epoch(), size, ttl, head, tail, ts_of(head, tail), max_bytes, rate]
        epoch, offset = await self._publish(keys, args)
        if epoch is None:
            raise OverQuota(int(offset) / 1_000_000)
        epoch = _text(epoch)
        return Published(epoch, int(offset), splice_position(head, epoch, int(offset), tail))

    # ---------------------------------------------------------------- fan-out

    def fanout_key(self, channel: str) -> str:
        """The Redis pub/sub channel of a channel's fan-out events.

        Pub/sub channels are server-wide, not per database: the database number is part of
        the name, so deployments that share a Redis server on different databases (with the
        same REDIS_PREFIX) never hear each other's publications.
        """
        return self.key(f"f{self.db}", channel)

    async def broadcast(self, channel: str, event: str) -> None:
        await self.redis.publish(self.fanout_key(channel), event)

    def listener(self, on_event: Callable[[str, str], None], on_resubscribed: Callable[[str], None]) -> Listener:
        return RedisListener(self, on_event, on_resubscribed)

    async def _read_stream(
        self, channel: str, ttl: int, mode: str, epoch="", offset=0, limit: int | None = None, max_bytes=None
    ) -> Slice:
        args = [new_epoch(), ttl, mode, epoch, offset, -1 if limit is None else limit, max_bytes or 0]
        result = await self._read([*self._stream_keys(channel), self.server_key_of(channel)], args)
        top_epoch, top, complete, items = result
        publications = [_text(item) for item in reversed(items)]
        return Slice(_text(top_epoch), int(top), publications, bool(complete))

    async def position(self, channel: str, *, ttl: int) -> Position:
        stream = await self._read_stream(channel, ttl, "pos")
        return Position(stream.epoch, stream.offset)

    async def positions(self, channels: list[str]) -> dict[str, Position | None]:
        stored: dict[str, Position | None] = {}
        for start in range(0, len(channels), POSITIONS_BATCH):
            batch = channels[start : start + POSITIONS_BATCH]
            flat = await self._positions([self.server_key, *(self.key("m", channel) for channel in batch)], [])
            for index, channel in enumerate(batch):
                epoch = flat[2 * index]
                stored[channel] = None if epoch is None else Position(_text(epoch), int(flat[2 * index + 1]))
        return stored

    async def since(
        self,
        channel: str,
        epoch: str,
        offset: int,
        *,
        ttl: int,
        limit: int | None = None,
        max_bytes: int | None = None,
        newest: bool = False,
    ) -> Slice:
        mode = "recent" if newest else "since"
        return await self._read_stream(channel, ttl, mode, epoch, offset, limit, max_bytes)

    async def latest(self, channel: str, limit: int, *, ttl: int, max_bytes: int | None = None) -> Slice:
        return await self._read_stream(channel, ttl, "latest", limit=limit, max_bytes=max_bytes)

    # ---------------------------------------------------------------- presence

    async def _now_ms(self) -> int:
        # Redis's clock, so every process agrees on expiry.
        seconds, micros = await self.redis.time()
        return seconds * 1000 + micros // 1000

    async def presence_add(self, channel: str, session: str, user: dict[str, Any], *, ttl: float) -> PresenceChange:
        now = await self._now_ms()
        expiry = now + int(ttl * 1000)
        joined, left = await self._presence_add(
            self._presence_keys(channel), [now, session, json.dumps(user), expiry, expiry + int(ttl * 1000)]
        )
        return PresenceChange([user] if joined else [], _users(left))

    async def presence_remove(self, channel: str, session: str) -> PresenceChange:
        _, left = await self._presence_remove(self._presence_keys(channel), [await self._now_ms(), session])
        return PresenceChange([], _users(left))

    async def presence_expire(self, channel: str, session: str, *, after: float) -> None:
        now = await self._now_ms()
        await self.redis.zadd(self.key("pz", channel), {session: now + int(after * 1000)}, xx=True)

    async def presence_touch(self, entries: dict[str, list[str]], *, ttl: float) -> None:
        if not entries:
            return
        expiry = await self._now_ms() + int(ttl * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel, sessions in entries.items():
                if sessions:
                    pipe.zadd(self.key("pz", channel), dict.fromkeys(sessions, expiry), xx=True)
                    for key in self._presence_keys(channel):  # (see PRESENCE_ADD)
                        pipe.pexpireat(key, expiry + int(ttl * 1000))
            await pipe.execute()

    async def presence_prune(self, channel: str) -> PresenceChange:
        _, left = await self._presence_prune(self._presence_keys(channel), [await self._now_ms()])
        return PresenceChange([], _users(left))

    async def presence_snapshot(self, channel: str) -> tuple[PresenceChange, list[dict[str, Any]]]:
        left, users = await self._presence_snapshot(self._presence_keys(channel), [await self._now_ms()])
        members = count_members(_users(users))
        return PresenceChange([], _users(left)), members

    # ---------------------------------------------------------------- resumable sessions

    async def session_write(self, writes: list[SessionWrite], *, ttl: float) -> list[bool]:
        if not writes:
            return []
        ttl_ms = max(1, int(ttl * 1000))
        async with self.redis.pipeline(transaction=False) as pipe:
            for write in writes:
                args = session_args(write, ttl_ms)
                await self._session_write(keys=[self.key("s", write.session)], args=args, client=pipe)
            return [bool(result) for result in await pipe.execute()]

    async def session_take(self, session: str, owner: str, user: str, *, ttl: float) -> TakenSession | None:
        fields = await self._session_take([self.key("s", session)], [owner, user, max(1, int(ttl * 1000))])
        if not fields:
            return None
        record = {_text(fields[i]): _text(fields[i + 1]) for i in range(0, len(fields), 2)}
        previous = record.pop("~o", "")
        record.pop("~u", None)
        return TakenSession(previous, {channel: json.loads(value) for channel, value in record.items()})

    async def session_delete(self, session: str, owner: str) -> None:
        await self._session_delete([self.key("s", session)], [owner])

    async def close(self) -> None:
        for listener in list(self.listeners):
            await listener.close()
        await self.redis.aclose()

    # ---------------------------------------------------------------- connection slots (MAX_CONNECTIONS_PER_USER)
    #
    # `<prefix>:c:<user>` sorted set slot (a socket's channel name) -> expiry (ms, Redis's clock).

    async def slot_admit(self, user: str, slot: str, *, limit: int, ttl: float) -> bool:
        return bool(await self._slot_admit([self.key("c", user)], [slot, limit, int(ttl * 1000)]))

    async def connect_take(self, user: str, *, rate: float, burst: int) -> bool:
        return bool(await self._connect_take([self.key("r", user)], [rate, burst]))

    async def admit(self, user: str, slot: str, *, rate: float, burst: int, limit: int, ttl: float) -> int:
        keys = [self.key("c", user), self.key("r", user)]
        return int(await self._admit(keys, [slot, limit, int(ttl * 1000), rate, burst]))

    async def revoked_at(self, user: str) -> int:
        value = await self.redis.get(self.key("rv", user))
        return int(value) if value is not None else 0

    async def record_revocation(self, user: str, at_us: int) -> None:
        await self._revoke(keys=[self.key("rv", user)], args=[at_us, REVOCATION_TTL])

    async def slot_release(self, user: str, slot: str) -> None:
        await self.redis.zrem(self.key("c", user), slot)

    async def slot_touch(self, slots: dict[str, list[str]], *, ttl: float) -> None:
        if not slots:
            return
        ttl_ms = int(ttl * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            for user, names in slots.items():
                if names:
                    await self._slot_touch(keys=[self.key("c", user)], args=[ttl_ms, *names], client=pipe)
            await pipe.execute()


class RedisListener(Listener):
    """One Redis pub/sub connection of this event loop: SUBSCRIBE per channel served, one reader task.

    Its own connection (a subscribed connection can do nothing else), outside the engine's
    pool. When it breaks (Redis restarted, the network), the reader connects again with a
    growing delay, subscribes every channel again, and reports each one through
    `on_resubscribed` once its subscription is confirmed, so that the subscriptions read
    what they missed from history.
    """

    READ_TIMEOUT = 15.0  # seconds of silence after which the connection is probed with PING
    RETRY = (0.05, 2.0)  # first and longest delay between attempts to reconnect
    CONFIRM_TIMEOUT = 10.0  # seconds `subscribe` waits for Redis to confirm

    def __init__(self, engine: RedisEngine, on_event, on_resubscribed) -> None:
        self.engine = engine
        self.on_event = on_event
        self.on_resubscribed = on_resubscribed
        self.channels: dict[bytes, str] = {}  # fan-out key -> channel, for every channel served
        self.confirms: dict[bytes, deque[asyncio.Future]] = {}  # SUBSCRIBEs sent, awaiting their reply
        self.connection: aioredis.Connection | None = None
        self.connected = asyncio.Event()
        self.attempted = asyncio.Event()  # the first attempt to connect is over (either way)
        self.closed = False
        self.failing = False
        engine.listeners.add(self)
        self.task = asyncio.get_running_loop().create_task(self._run(), name="realtime-fanout-listener")

    async def subscribe(self, channel: str) -> None:
        key = self.engine.fanout_key(channel).encode()
        self.channels[key] = channel
        if not self.connected.is_set():
            # Connecting for the first time: wait for that attempt. Reconnecting: fail now
            # (the request is answered `unavailable`; the client's retry finds Redis back).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.attempted.wait(), self.CONFIRM_TIMEOUT)
            if not self.connected.is_set():
                self.channels.pop(key, None)
                raise aioredis.ConnectionError("the fan-out connection to Redis is down")
        done = asyncio.get_running_loop().create_future()
        self.confirms.setdefault(key, deque()).append(done)
        try:
            await self.connection.send_command("SUBSCRIBE", key)
            await asyncio.wait_for(asyncio.shield(done), self.CONFIRM_TIMEOUT)
        except BaseException:
            self.channels.pop(key, None)  # the hub asks again at the next subscriber
            raise

    def unsubscribe(self, channel: str) -> None:
        key = self.engine.fanout_key(channel).encode()
        if self.channels.pop(key, None) is None:
            return
        connection = self.connection
        if connection is not None and self.connected.is_set():
            task = asyncio.ensure_future(connection.send_command("UNSUBSCRIBE", key))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # a broken connection resubscribes less

    async def close(self) -> None:
        self.closed = True
        self.engine.listeners.discard(self)
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task

    def _fail_pending(self, exc: BaseException) -> None:
        for waiting in self.confirms.values():
            for done in waiting:
                if not done.done():
                    done.set_exception(exc)
                    done.exception()  # retrieved: the subscriber may have given up already
        self.confirms.clear()

    async def _run(self) -> None:
        delay, longest = self.RETRY
        first = True
        while not self.closed:
            connection = self.engine.redis.connection_pool.make_connection()
            connection.client_name = f"{self.engine.prefix}:fanout"  # CLIENT LIST shows what it is
            try:
                await connection.connect()
                self.connection = connection
                resubscribe = list(self.channels)
                if resubscribe:
                    await connection.send_command("SUBSCRIBE", *resubscribe)
                self.connected.set()
                self.attempted.set()
                if self.failing:
                    self.failing = False
                    logger.info("realtime fan-out: connected to Redis again")
                delay = self.RETRY[0]
                await self._read(connection, set() if first else set(resubscribe))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.attempted.set()
                if not self.failing:
                    self.failing = True
                    logger.warning("realtime fan-out: lost Redis (%r); reconnecting", exc)
            finally:
                self.connected.clear()
                self.connection = None
                self._fail_pending(aioredis.ConnectionError("the fan-out connection to Redis broke"))
                with contextlib.suppress(Exception):
                    await connection.disconnect()
            first = False
            await asyncio.sleep(delay)
            delay = min(longest, delay * 2)

    async def _read(self, connection: aioredis.Connection, resubscribed: set[bytes]) -> None:
        probed = False
        while True:
            # push_request: with RESP3 (redis-py 8's default) pub/sub replies are pushes
            reply = await connection.read_response(timeout=self.READ_TIMEOUT, push_request=True)
            if reply is None:  # silence: probe once, then give up on this connection
                if probed:
                    raise aioredis.ConnectionError("no reply from Redis to a PING")
                probed = True
                await connection.send_command("PING")
                continue
            probed = False
            if not isinstance(reply, list):  # PONG
                continue
            kind = reply[0]
            if kind == b"message":
                channel = self.channels.get(reply[1])
                if channel is not None:
                    self.on_event(channel, reply[2].decode())
            elif kind == b"subscribe":
                waiting = self.confirms.get(reply[1])
                if waiting:
                    done = waiting.popleft()
                    if not waiting:
                        del self.confirms[reply[1]]
                    if not done.done():
                        done.set_result(None)
                elif reply[1] in resubscribed:
                    resubscribed.discard(reply[1])
                    channel = self.channels.get(reply[1])
                    if channel is not None:
                        self.on_resubscribed(channel)
