"""Redis pool engine: one pool shared by the nodes of a deployment (docs/ARCHITECTURE.md, pool).

Layout under the key prefix ``P`` (``{redis_key}``, a Cluster hash tag, so every key
is in one slot and each script runs on one node):

- ``P:b:<kind>`` — a list per source kind, oldest block at the head. Each
  entry is ``seq`` (16 decimal digits, global put order) + credited bits (4
  hex) + harvest id length (4 hex) + harvest id + the block's 64 bytes + its
  integrity tag (the rest of the entry; opaque here, checked by
  :mod:`quantumrng.pool.integrity`). The tag goes last so the scripts parse
  the header as before and an entry written before tags has an empty one.
- ``P:kinds`` — the set of kinds whose list is non-empty.
- ``P:h:<harvest id>`` — a hash: ``prov`` (canonical JSON), ``source``,
  ``left`` (blocks still in the pool); deleted with the harvest's last block.
- ``P:recent`` — a sorted set of harvest ids scored by their newest ``seq``.
- ``P:level`` — a hash of counters: ``blocks``, ``bits``, ``n:<kind>``.
- ``P:seq`` — the sequence counter.
- ``P:r:<name>`` — a record (assessment, source state): opaque bytes.
- ``P:lease:<name>`` — a lease: a hash of ``holder`` ("" when nobody holds it),
  ``token`` (the last one granted; it outlives the holder, so tokens only grow),
  ``granted`` and ``expires`` (milliseconds of the Redis server's ``TIME``, never
  a node's clock). A fenced ``put`` checks the lease inside the put script.

Every write is one Lua script, so Redis runs it atomically: ``take`` checks
``LLEN`` before removing anything (all or nothing) and, without a source
filter, merges the kind lists by ``seq`` (oldest first); the counters change
in the same scripts, so ``level`` is one ``HGETALL``. Scripts name keys from
``ARGV``; each call names ``P:seq`` as its one key, which routes it to the node
holding the slot under Cluster.

The client never retries a command: a retried ``put`` after a lost reply
would store the same blocks twice, and they would be served twice. A put
that raises ``Unavailable`` may or may not have landed; its blocks must be
discarded, never put again. Durability across a Redis restart is the
server's (``appendonly yes``, ``appendfsync always`` for the same guarantee
as the SQLite engine). Every write (script or command) goes through
:func:`~quantumrng.storage.redis.run_script` / ``run_command``, which under
Sentinel counts it only once a replica has it: a failover cannot undo a write
that was counted.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from quantumrng.block import BLOCK_BYTES, Block
from quantumrng.errors import ConfigError, EntropyUnavailable, Unavailable
from quantumrng.pool._common import (
    check_holder,
    check_lease,
    check_limit,
    check_record_name,
    check_take,
    dump_provenance,
    group_harvests,
    lease_lost,
    lease_millis,
    load_provenance,
)
from quantumrng.pool.base import Lease, LeaseInfo, PoolLevel
from quantumrng.provenance import Provenance
from quantumrng.storage.errors import translate_errors
from quantumrng.storage.redis import (
    INSTALL_HINT,
    key_prefix,
    open_url,
    redacted,
    run_command,
    run_script,
)

__all__ = ["INSTALL_HINT", "RedisPool"]

_LEASE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function ms(x) return string.format('%.0f', x) end
local function lease(key, now)  -- holder, token, current
  local v = redis.call('HMGET', key, 'holder', 'token', 'granted', 'expires')
  local g, e = tonumber(v[3]), tonumber(v[4])
  local current = v[1] and v[1] ~= '' and g ~= nil and e ~= nil and g <= now and now < e
  return v[1], tonumber(v[2]) or 0, current
end
local function holds(key, holder, token, now)
  local h, t, current = lease(key, now)
  return current and h == holder and t == tonumber(token)
end
"""

_PUT = (
    _LEASE
    + """
local p = ARGV[1]
if ARGV[2] ~= '' and not holds(p .. ':lease:' .. ARGV[2], ARGV[3], ARGV[4], now_ms()) then
  return -1
end
local nh = tonumber(ARGV[5])
local lvl = p .. ':level'
local hids, srcs = {}, {}
local i = 6
for h = 1, nh do
  local hid, src = ARGV[i], ARGV[i + 1]
  local hkey = p .. ':h:' .. hid
  if redis.call('HSETNX', hkey, 'prov', ARGV[i + 2]) == 1 then
    redis.call('HSET', hkey, 'source', src, 'left', 0)
  else
    src = redis.call('HGET', hkey, 'source')
  end
  hids[h], srcs[h] = hid, src
  i = i + 3
end
local nb = (#ARGV - i + 1) / 3
local seq = redis.call('INCRBY', p .. ':seq', nb) - nb
local lists, kinds, counts, newest, bits = {}, {}, {}, {}, 0
while i <= #ARGV do
  local h, credited = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  local hid, src = hids[h], srcs[h]
  seq = seq + 1
  if lists[src] == nil then
    lists[src] = {}
    kinds[#kinds + 1] = src
  end
  local list = lists[src]
  list[#list + 1] = string.format('%016d%04x%04x', seq, credited, #hid) .. hid .. ARGV[i + 2]
  counts[h] = (counts[h] or 0) + 1
  newest[h] = seq
  bits = bits + credited
  i = i + 3
end
for _, src in ipairs(kinds) do
  local list = lists[src]
  for a = 1, #list, 1000 do  -- stay below unpack()'s stack limit
    redis.call('RPUSH', p .. ':b:' .. src, unpack(list, a, math.min(a + 999, #list)))
  end
  redis.call('SADD', p .. ':kinds', src)
  redis.call('HINCRBY', lvl, 'n:' .. src, #list)
end
for h = 1, nh do
  redis.call('HINCRBY', p .. ':h:' .. hids[h], 'left', counts[h])
  redis.call('ZADD', p .. ':recent', newest[h], hids[h])
end
redis.call('HINCRBY', lvl, 'blocks', nb)
redis.call('HINCRBY', lvl, 'bits', bits)
return nb
"""
)

_ACQUIRE = (
    _LEASE
    + """
local now = now_ms()
local h, token, current = lease(KEYS[1], now)
if current and h ~= ARGV[1] then return 0 end
if not current then token = token + 1 end
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'token', token,
  'granted', ms(now), 'expires', ms(now + tonumber(ARGV[2])))
return token
"""
)

_RENEW = (
    _LEASE
    + """
local now = now_ms()
if not holds(KEYS[1], ARGV[1], ARGV[2], now) then return 0 end
redis.call('HSET', KEYS[1], 'granted', ms(now), 'expires', ms(now + tonumber(ARGV[3])))
return 1
"""
)

_RELEASE = (
    _LEASE
    + """
if holds(KEYS[1], ARGV[1], ARGV[2], now_ms()) then
  redis.call('HSET', KEYS[1], 'holder', '', 'expires', 0)
end
return 0
"""
)

_HOLDER = (
    _LEASE
    + """
local now = now_ms()
local h, token, current = lease(KEYS[1], now)
if not current then return false end
return {h, token, tonumber(redis.call('HGET', KEYS[1], 'expires')) - now}
"""
)

_DISCARD = """
local p = ARGV[1]
local lvl = p .. ':level'
local gone, by_src = {}, {}
for i = 2, #ARGV do
  local hkey = p .. ':h:' .. ARGV[i]
  local src = redis.call('HGET', hkey, 'source')
  if src then
    gone[ARGV[i]] = true
    by_src[src] = true
    redis.call('DEL', hkey)
    redis.call('ZREM', p .. ':recent', ARGV[i])
  end
end
local removed = 0
for src, _ in pairs(by_src) do
  local key = p .. ':b:' .. src
  local entries = redis.call('LRANGE', key, 0, -1)
  local kept, n, bits = {}, 0, 0
  for _, e in ipairs(entries) do
    local size = tonumber(string.sub(e, 21, 24), 16)
    if gone[string.sub(e, 25, 24 + size)] then
      n = n + 1
      bits = bits + tonumber(string.sub(e, 17, 20), 16)
    else
      kept[#kept + 1] = e
    end
  end
  if n > 0 then
    redis.call('DEL', key)
    for a = 1, #kept, 1000 do
      redis.call('RPUSH', key, unpack(kept, a, math.min(a + 999, #kept)))
    end
    if #kept == 0 then redis.call('SREM', p .. ':kinds', src) end
    redis.call('HINCRBY', lvl, 'n:' .. src, -n)
    redis.call('HINCRBY', lvl, 'blocks', -n)
    redis.call('HINCRBY', lvl, 'bits', -bits)
    removed = removed + n
  end
end
return removed
"""

_TAKE = """
local p = ARGV[1]
local n = tonumber(ARGV[2])
local kinds
if ARGV[3] ~= '' then kinds = {ARGV[3]} else kinds = redis.call('SMEMBERS', p .. ':kinds') end
local have = 0
for _, kind in ipairs(kinds) do have = have + redis.call('LLEN', p .. ':b:' .. kind) end
if have < n then return have end
local heads, pos = {}, {}
for k, kind in ipairs(kinds) do
  heads[k] = redis.call('LRANGE', p .. ':b:' .. kind, 0, n - 1)
  pos[k] = 1
end
local taken = {}
for j = 1, n do
  local best, bestseq = nil, nil
  for k = 1, #kinds do
    local e = heads[k][pos[k]]
    if e then
      local s = string.sub(e, 1, 16)
      if best == nil or s < bestseq then best, bestseq = k, s end
    end
  end
  taken[j] = heads[best][pos[best]]
  pos[best] = pos[best] + 1
end
local lvl = p .. ':level'
for k, kind in ipairs(kinds) do
  local c = pos[k] - 1
  if c > 0 then
    local key = p .. ':b:' .. kind
    redis.call('LTRIM', key, c, -1)
    if redis.call('LLEN', key) == 0 then redis.call('SREM', p .. ':kinds', kind) end
    if redis.call('HINCRBY', lvl, 'n:' .. kind, -c) <= 0 then
      redis.call('HDEL', lvl, 'n:' .. kind)
    end
  end
end
local used, order, bits = {}, {}, 0
for _, e in ipairs(taken) do
  bits = bits + tonumber(string.sub(e, 17, 20), 16)
  local hid = string.sub(e, 25, 24 + tonumber(string.sub(e, 21, 24), 16))
  if used[hid] == nil then
    used[hid] = 0
    order[#order + 1] = hid
  end
  used[hid] = used[hid] + 1
end
redis.call('HINCRBY', lvl, 'blocks', -n)
redis.call('HINCRBY', lvl, 'bits', 0 - bits)  -- not -bits: Lua's -0 is not an integer to Redis
local provs = {}
for _, hid in ipairs(order) do
  local hkey = p .. ':h:' .. hid
  provs[#provs + 1] = hid
  provs[#provs + 1] = redis.call('HGET', hkey, 'prov')
  if redis.call('HINCRBY', hkey, 'left', -used[hid]) <= 0 then
    redis.call('DEL', hkey)
    redis.call('ZREM', p .. ':recent', hid)
  end
end
return {taken, provs}
"""

_RECENT = """
local p = ARGV[1]
local out = {}
for _, hid in ipairs(redis.call('ZREVRANGE', p .. ':recent', 0, tonumber(ARGV[2]) - 1)) do
  local v = redis.call('HMGET', p .. ':h:' .. hid, 'prov', 'left')
  out[#out + 1] = v[1]
  out[#out + 1] = v[2]
end
return out
"""

_HEADER = 24  # bytes of an entry before the harvest id: seq(16) + bits(4) + id length(4)
_STORE = "the Redis pool"


class RedisPool:
    """A :class:`~quantumrng.pool.base.Pool` in Redis, shared by several nodes.

    ``target`` is a client from :func:`~quantumrng.storage.redis.open_redis` (a
    single server, Sentinel or Cluster) or, for tools and tests, a ``redis://``
    URL. ``name`` is what reprs show of it (never a password).
    """

    def __init__(self, target: str | Any, *, prefix: str = "quantumrng", name: str = "") -> None:
        if not prefix:
            raise ConfigError("redis_key must not be empty")
        self._prefix = key_prefix(prefix)
        if isinstance(target, str):
            self._client: Any = open_url(target)
            self._url = redacted(target)
        else:
            self._client = target
            self._url = name or "redis"
        self._closed = False
        self._route = [f"{self._prefix}:seq"]  # the slot of every key (Cluster routing)
        self._put = self._client.register_script(_PUT)
        self._take = self._client.register_script(_TAKE)
        self._recent = self._client.register_script(_RECENT)
        self._discard = self._client.register_script(_DISCARD)
        self._acquire = self._client.register_script(_ACQUIRE)
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)
        self._holder = self._client.register_script(_HOLDER)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"RedisPool({self._url!r}, prefix={self._prefix!r}, {state})"

    @property
    def prefix(self) -> str:
        """The prefix of every key this pool writes: ``{redis_key}`` (a Cluster hash tag)."""
        return self._prefix

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Fail closed when closed, or on any Redis error (named by its class only)."""
        if self._closed:
            raise Unavailable("the entropy pool is closed")
        with translate_errors(_STORE):
            yield

    def put(self, blocks: Sequence[Block], *, fence: Lease | None = None) -> None:
        """Add blocks in one atomic script; with ``fence``, only while it is held (checked
        by the same script, on the server's clock)."""
        groups = group_harvests(blocks)
        if fence is not None:
            check_lease(fence)
        if not groups:
            return
        index = {hid: i for i, hid in enumerate(groups, start=1)}
        args: list[str | int | bytes] = [self._prefix]
        args += ["", "", 0] if fence is None else [fence.name, fence.holder, fence.token]
        args.append(len(groups))
        for hid, prov in groups.items():
            args += [hid, prov.source, dump_provenance(prov)]
        for b in blocks:
            args += [index[b.provenance.harvest_id], b.credited_bits, b.data + b.tag]
        with self._errors():
            stored = run_script(self._client, self._put, self._route, args)
        if fence is not None and stored == -1:
            raise lease_lost(fence)

    def take(self, n: int, *, source: str | None = None) -> list[Block]:
        """Remove and return the ``n`` oldest blocks (of ``source``), or none at all."""
        check_take(n, source)
        with self._errors():
            reply = run_script(
                self._client, self._take, self._route, [self._prefix, n, source or ""]
            )
        if isinstance(reply, int):
            raise EntropyUnavailable(f"the pool holds {reply} of the {n} blocks asked for")
        try:
            entries, flat = reply
            provenance = {
                flat[i].decode(): load_provenance(flat[i + 1], _STORE)
                for i in range(0, len(flat), 2)
            }
            taken = []
            for entry in entries:
                size = int(entry[20:_HEADER], 16)
                hid = entry[_HEADER : _HEADER + size].decode()
                start = _HEADER + size
                data, tag = entry[start : start + BLOCK_BYTES], entry[start + BLOCK_BYTES :]
                if len(data) != BLOCK_BYTES:
                    raise ValueError("short entry")
                taken.append(Block(bytes(data), int(entry[16:20], 16), provenance[hid], bytes(tag)))
        except (TypeError, ValueError, KeyError, AttributeError):
            raise Unavailable(f"{_STORE} holds a malformed entry") from None
        return taken

    def level(self) -> PoolLevel:
        """Return blocks, credited bits and blocks per source kind (one ``HGETALL``)."""
        with self._errors():
            raw: dict[bytes, bytes] = self._client.hgetall(f"{self._prefix}:level")
        try:
            counts = {key.decode(): int(value) for key, value in raw.items()}
        except (TypeError, ValueError):
            raise Unavailable(f"{_STORE} holds malformed counters") from None
        by_source = {k[2:]: v for k, v in counts.items() if k.startswith("n:") and v > 0}
        return PoolLevel(
            blocks=counts.get("blocks", 0),
            credited_bits=counts.get("bits", 0),
            by_source=by_source,
        )

    def recent(self, limit: int = 10) -> list[tuple[Provenance, int]]:
        """Return the most recently put harvests still in the pool, newest first."""
        check_limit(limit)
        if limit == 0:
            return []
        with self._errors():
            flat = self._recent(keys=self._route, args=[self._prefix, limit])
        try:
            return [
                (load_provenance(flat[i], _STORE), int(flat[i + 1]))
                for i in range(0, len(flat), 2)
                if flat[i] is not None
            ]
        except (TypeError, ValueError):
            raise Unavailable(f"{_STORE} holds a malformed harvest record") from None

    def discard(self, harvest_ids: Collection[str]) -> int:
        """Remove every block of these harvests in one atomic script; return how many."""
        ids = list(dict.fromkeys(harvest_ids))
        if not ids:
            return 0
        with self._errors():
            return int(run_script(self._client, self._discard, self._route, [self._prefix, *ids]))

    def read_record(self, name: str) -> bytes | None:
        """Return the record ``name``, or None."""
        check_record_name(name)
        with self._errors():
            value = self._client.get(f"{self._prefix}:r:{name}")
        return None if value is None else bytes(value)

    def write_record(self, name: str, value: bytes | None) -> None:
        """Store or delete the record ``name``."""
        check_record_name(name, value)
        with self._errors():
            if value is None:
                run_command(self._client, "DEL", f"{self._prefix}:r:{name}")
            else:
                run_command(self._client, "SET", f"{self._prefix}:r:{name}", value)

    def _lease_key(self, name: str) -> list[str]:
        return [f"{self._prefix}:lease:{name}"]

    def acquire_lease(self, name: str, holder: str, seconds: float) -> Lease | None:
        """Take or renew the lease ``name`` in one script; None while another holds it."""
        check_record_name(name)
        check_holder(holder)
        span = lease_millis(seconds)
        with self._errors():
            token = int(
                run_script(self._client, self._acquire, self._lease_key(name), [holder, span])
            )
        return Lease(name, holder, token) if token > 0 else None

    def renew_lease(self, lease: Lease, seconds: float) -> bool:
        """Extend ``lease`` in one script if still held as it says."""
        check_lease(lease)
        span = lease_millis(seconds)
        with self._errors():
            args = [lease.holder, lease.token, span]
            return (
                int(run_script(self._client, self._renew, self._lease_key(lease.name), args)) == 1
            )

    def release_lease(self, lease: Lease) -> None:
        """Give ``lease`` up if still held as it says (its token is kept)."""
        check_lease(lease)
        with self._errors():
            run_script(
                self._client,
                self._release,
                self._lease_key(lease.name),
                [lease.holder, lease.token],
            )

    def lease_holder(self, name: str) -> LeaseInfo | None:
        """Who holds the lease ``name`` now, by the server's clock, or None."""
        check_record_name(name)
        with self._errors():
            reply = self._holder(keys=self._lease_key(name), args=[])
        if reply is None:
            return None
        try:
            holder, token, left = reply
            return LeaseInfo(name, bytes(holder).decode(), int(token), int(left) / 1000)
        except (TypeError, ValueError):
            raise Unavailable(f"{_STORE} holds a malformed lease") from None

    def close(self) -> None:
        """Close the connections; the pool stays in Redis."""
        self._closed = True
        self._client.close()
