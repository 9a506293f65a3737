"""The ledger store in Redis, shared by every node of a deployment (the ``LedgerStore``
of :mod:`quantumrng.transparency.store`).

Layout under the key prefix ``P`` (``{redis_key}``, the pool's Cluster hash tag,
so every key is in one slot and each script runs on one node), all below ``P:log:``:

- ``serial``, ``size`` — the last global serial and the number of leaves;
- ``keys`` — a hash: key hash → the last serial of that API key;
- ``e:<leaf index>`` — a hash per entry: ``k`` kind, ``c`` created at, ``h`` leaf
  hash and, as they apply, ``s`` serial, ``a`` key hash, ``n`` key serial, ``ch``
  chain, ``p`` pulse index, ``t`` time (ms); small fields only, so Redis keeps it
  in its compact encoding;
- ``l:<leaf index>``, ``d:<leaf index>`` — the entry's leaf and document (strings),
  deleted when retention prunes a result;
- ``nodes`` — a hash: ``"<level>:<index>"`` → node hash (level 0 written by append);
- ``serials`` — a hash: serial → leaf index;
- ``pulses`` — a hash: ``"<chain>:<pulse>"`` → leaf index;
- ``order`` — a sorted set of ``"<chain>:<pulse>:<leaf index>"``, chain and pulse
  zero-padded to 20 digits, read by lexical range for the newest pulse;
- ``times`` — a sorted set of pulse leaf indexes scored by time (ms);
- ``live`` — a sorted set of the leaf indexes of results whose document is still
  stored, scored by creation time (what retention prunes);
- ``heads`` — a hash: tree size → signed head; ``head-max`` the largest size;
- ``key-docs`` — a hash: key id → public key entry; ``key-order`` the ids, first
  published first.

Appends are optimistic: one read script returns the counters, ``make`` numbers
and signs from them, and one write script stores everything only if the
counters are unchanged; else it returns them as they are now and ``make`` runs
again with those, after a short random pause. Writes go through
:func:`~quantumrng.storage.redis.run_script`, so under Sentinel a write counts
only once a replica has it. A write whose outcome is unknown (the connection
failed mid-script, or no replica acknowledged it) is never sent again: the
caller sees ``Unavailable`` (503), as the pool does. Durability across a Redis
restart is the server's (``appendonly yes``, ``appendfsync always``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from quantumrng.errors import Unavailable
from quantumrng.storage.errors import translate_errors
from quantumrng.storage.redis import key_prefix, open_url, redacted, run_script
from quantumrng.transparency.store import Counters, Entry, PulseExists, check_numbering

__all__ = ["MAX_CONFLICTS", "RedisLedger"]

MAX_CONFLICTS = 100  # appends beaten by another writer before Unavailable
_BACKOFF = 0.0005  # seconds: the first pause after a conflict, doubled each time
_MAX_BACKOFF = 0.02  # seconds
_PRUNE_BATCH = 1000  # results pruned per script, so Redis is never held long
_PAD = 20  # digits of chain and pulse indexes in ``order``
_STORE = "the Redis ledger"

_READ_COUNTERS = """
local function counters(p, keys)
  local out = {redis.call('GET', p .. 'serial'), redis.call('GET', p .. 'size')}
  if #keys > 0 then
    local last = redis.call('HMGET', p .. 'keys', unpack(keys))
    for i = 1, #last do out[#out + 1] = last[i] end
  end
  return out
end
"""

# ARGV: prefix, key hashes; returns {serial, size, last serial of each key}, as stored.
_COUNTERS = (
    _READ_COUNTERS
    + """
local keys = {}
for i = 2, #ARGV do keys[#keys + 1] = ARGV[i] end
return counters(ARGV[1], keys)
"""
)

# ARGV: prefix, serial, size (as read), n, n x (key hash, as read), new serial, new size,
# m, m x (key hash, new last serial), then per entry: index, serial, pulse key, order
# member, time, created at, leaf hash, leaf, document, stored ('l', 'd', 'ld' or ''),
# f, f x (field, value).
# Returns 1 (stored), -1 (a pulse is taken: nothing stored), or on a conflict the
# counters as they are now (as _COUNTERS; nothing stored).
_APPEND = (
    _READ_COUNTERS
    + """
local p = ARGV[1]
local keys, moved = {}, false
local i = 5
for _ = 1, tonumber(ARGV[4]) do
  keys[#keys + 1] = ARGV[i]
  moved = moved or (redis.call('HGET', p .. 'keys', ARGV[i]) or '') ~= ARGV[i + 1]
  i = i + 2
end
if moved or (redis.call('GET', p .. 'serial') or '') ~= ARGV[2]
    or (redis.call('GET', p .. 'size') or '') ~= ARGV[3] then
  return counters(p, keys)
end
local new_serial, new_size = ARGV[i], ARGV[i + 1]
local changed = i + 2
i = changed + 1 + 2 * tonumber(ARGV[changed])
local first = i
local seen, times = {}, {}
while i <= #ARGV do
  local pulse, t = ARGV[i + 2], ARGV[i + 4]
  if pulse ~= '' then
    if seen[pulse] or times[t] or redis.call('HEXISTS', p .. 'pulses', pulse) == 1
        or redis.call('ZCOUNT', p .. 'times', t, t) > 0 then
      return -1
    end
    seen[pulse], times[t] = true, true
  end
  i = i + 11 + 2 * tonumber(ARGV[i + 10])
end
i = first
while i <= #ARGV do
  local index, serial, pulse = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local nf = tonumber(ARGV[i + 10])
  redis.call('HSET', p .. 'e:' .. index, unpack(ARGV, i + 11, i + 10 + 2 * nf))
  local stored = ARGV[i + 9]
  if string.find(stored, 'l', 1, true) then redis.call('SET', p .. 'l:' .. index, ARGV[i + 7]) end
  if string.find(stored, 'd', 1, true) then redis.call('SET', p .. 'd:' .. index, ARGV[i + 8]) end
  redis.call('HSET', p .. 'nodes', '0:' .. index, ARGV[i + 6])
  if serial ~= '' then
    redis.call('HSET', p .. 'serials', serial, index)
    if string.find(stored, 'd', 1, true) then
      redis.call('ZADD', p .. 'live', ARGV[i + 5], index)
    end
  end
  if pulse ~= '' then
    redis.call('HSET', p .. 'pulses', pulse, index)
    redis.call('ZADD', p .. 'order', 0, ARGV[i + 3])
    redis.call('ZADD', p .. 'times', ARGV[i + 4], index)
  end
  i = i + 11 + 2 * nf
end
if new_serial ~= ARGV[2] then redis.call('SET', p .. 'serial', new_serial) end
redis.call('SET', p .. 'size', new_size)
for k = changed + 1, changed + 2 * tonumber(ARGV[changed]), 2 do
  redis.call('HSET', p .. 'keys', ARGV[k], ARGV[k + 1])
end
return 1
"""
)

# ARGV: prefix, how, what...; returns {leaf index, HGETALL of the entry, leaf, document}
# or false.
_FIND = """
local p, how = ARGV[1], ARGV[2]
local index, found
if how == 'index' then
  index = ARGV[3]
elseif how == 'serial' then
  index = redis.call('HGET', p .. 'serials', ARGV[3])
elseif how == 'pulse' then
  index = redis.call('HGET', p .. 'pulses', ARGV[3])
elseif how == 'last' then
  found = redis.call('ZREVRANGEBYLEX', p .. 'order', ARGV[3], ARGV[4], 'LIMIT', 0, 1)[1]
  index = found and string.match(found, ':(%d+)$')
elseif how == 'at' then
  index = redis.call('ZRANGEBYSCORE', p .. 'times', ARGV[3], ARGV[3], 'LIMIT', 0, 1)[1]
elseif how == 'before' then
  index = redis.call('ZREVRANGEBYSCORE', p .. 'times', '(' .. ARGV[3], '-inf', 'LIMIT', 0, 1)[1]
elseif how == 'after' then
  index = redis.call('ZRANGEBYSCORE', p .. 'times', '(' .. ARGV[3], '+inf', 'LIMIT', 0, 1)[1]
end
if not index then return false end
local fields = redis.call('HGETALL', p .. 'e:' .. index)
if #fields == 0 then return false end
return {index, fields, redis.call('GET', p .. 'l:' .. index),
  redis.call('GET', p .. 'd:' .. index)}
"""

_PUT_NODES = """
local p = ARGV[1]
for i = 2, #ARGV, 2 do redis.call('HSETNX', p .. 'nodes', ARGV[i], ARGV[i + 1]) end
return 0
"""

_PUT_HEAD = """
local p = ARGV[1]
if redis.call('HSETNX', p .. 'heads', ARGV[2], ARGV[3]) == 1 then
  local top = tonumber(redis.call('GET', p .. 'head-max') or '-1')
  if tonumber(ARGV[2]) > top then redis.call('SET', p .. 'head-max', ARGV[2]) end
end
return 0
"""

_HEAD = """
local p = ARGV[1]
local size = ARGV[2]
if size == '' then size = redis.call('GET', p .. 'head-max') end
if not size then return false end
return redis.call('HGET', p .. 'heads', size)
"""

_REGISTER_KEY = """
local p = ARGV[1]
if redis.call('HSET', p .. 'key-docs', ARGV[2], ARGV[3]) == 1 then
  redis.call('RPUSH', p .. 'key-order', ARGV[2])
end
return 0
"""

_PUBLIC_KEYS = """
local p = ARGV[1]
local out = {}
for _, id in ipairs(redis.call('LRANGE', p .. 'key-order', 0, -1)) do
  local doc = redis.call('HGET', p .. 'key-docs', id)
  if doc then out[#out + 1] = doc end
end
return out
"""

# ARGV: prefix, '(' .. before, batch; returns how many results were pruned.
_PRUNE = """
local p = ARGV[1]
local old = redis.call('ZRANGEBYSCORE', p .. 'live', '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, index in ipairs(old) do
  redis.call('DEL', p .. 'l:' .. index, p .. 'd:' .. index)
  redis.call('ZREM', p .. 'live', index)
end
return #old
"""

_INT_FIELDS = {
    b"s": "serial",
    b"n": "key_serial",
    b"ch": "chain_index",
    b"p": "pulse_index",
    b"t": "time_ms",
}


def _decode_count(value: Any) -> int:
    """A counter as stored (None: never written)."""
    return 0 if value is None else int(value)


def _pulse_member(chain: int, pulse: int) -> str:
    return f"{chain:0{_PAD}d}:{pulse:0{_PAD}d}:"


def _entry_args(e: Entry) -> list[Any]:
    """One entry's part of the append script's ``ARGV`` (see ``_APPEND``)."""
    fields: list[Any] = ["k", e.kind, "c", repr(float(e.created_at)), "h", e.leaf_hash]
    fields += ["a", e.key_hash] if e.key_hash is not None else []
    for short, name in _INT_FIELDS.items():
        value = getattr(e, name)
        if value is not None:
            fields += [short.decode(), str(int(value))]
    serial = str(e.serial) if e.kind == "result" and e.serial is not None else ""
    pulse = member = moment = ""
    if e.kind == "pulse":
        assert e.chain_index is not None and e.pulse_index is not None and e.time_ms is not None
        if e.chain_index < 0 or e.pulse_index < 0:
            raise ValueError("a pulse's chain and index are not negative")
        pulse = f"{e.chain_index}:{e.pulse_index}"
        member = _pulse_member(e.chain_index, e.pulse_index) + str(e.leaf_index)
        moment = str(int(e.time_ms))
    return [
        str(e.leaf_index),
        serial,
        pulse,
        member,
        moment,
        repr(float(e.created_at)),
        e.leaf_hash,
        e.leaf or b"",
        e.document or b"",
        ("l" if e.leaf is not None else "") + ("d" if e.document is not None else ""),
        len(fields) // 2,
        *fields,
    ]


def _entry(index: bytes, flat: Sequence[bytes], leaf: Any, document: Any) -> Entry:
    fields = {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}
    ints = {name: int(fields[short]) for short, name in _INT_FIELDS.items() if short in fields}
    key = fields.get(b"a")
    return Entry(
        leaf_index=int(index),
        kind=fields[b"k"].decode(),
        created_at=float(fields[b"c"]),
        leaf=None if leaf is None else bytes(leaf),
        document=None if document is None else bytes(document),
        key_hash=None if key is None else key.decode(),
        leaf_hash=bytes(fields[b"h"]),
        **ints,
    )


class RedisLedger:
    """A :class:`~quantumrng.transparency.store.LedgerStore` in Redis.

    ``target`` is a client from :func:`~quantumrng.storage.redis.open_redis`
    (stand-alone, Sentinel or Cluster) or, for tools and tests, a ``redis://``
    URL; ``prefix`` the deployment's ``redis_key``; ``name`` what reprs show of
    the server (never a password).
    """

    def __init__(self, target: str | Any, *, prefix: str = "quantumrng", name: str = "") -> None:
        self._prefix = key_prefix(prefix)
        self._p = f"{self._prefix}:log:"
        if isinstance(target, str):
            self._client: Any = open_url(target)
            self._name = redacted(target)
        else:
            self._client = target
            self._name = name or "redis"
        self._closed = False
        self._route = [f"{self._p}size"]  # the slot of every key (Cluster routing)
        register = self._client.register_script
        self._counters_script = register(_COUNTERS)
        self._append_script = register(_APPEND)
        self._find_script = register(_FIND)
        self._put_nodes_script = register(_PUT_NODES)
        self._put_head_script = register(_PUT_HEAD)
        self._head_script = register(_HEAD)
        self._register_key_script = register(_REGISTER_KEY)
        self._public_keys_script = register(_PUBLIC_KEYS)
        self._prune_script = register(_PRUNE)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"RedisLedger({self._name!r}, prefix={self._prefix!r}, {state})"

    @property
    def prefix(self) -> str:
        """The prefix of every key: ``{redis_key}`` (a Cluster hash tag)."""
        return self._prefix

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Fail closed when closed, or on any Redis error (named by its class only)."""
        if self._closed:
            raise Unavailable("the ledger is closed")
        with translate_errors(_STORE):
            yield

    @contextmanager
    def _decoding(self, what: str) -> Iterator[None]:
        try:
            yield
        except (TypeError, ValueError, KeyError, AttributeError, UnicodeDecodeError):
            raise Unavailable(f"{_STORE} holds a malformed {what}") from None

    def _read(self, script: Any, *args: Any) -> Any:
        """Run a read-only script (nothing to confirm with replicas)."""
        with self._errors():
            return script(keys=self._route, args=[self._p, *args])

    def _write(self, script: Any, *args: Any) -> Any:
        with self._errors():
            return run_script(self._client, script, self._route, [self._p, *args])

    # --- appends --------------------------------------------------------------

    def append(
        self, key_hashes: Collection[str], make: Callable[[Counters], Sequence[Entry]]
    ) -> list[Entry]:
        """Store what ``make(counters)`` returns if nobody appended meanwhile, else
        call ``make`` again with fresh counters (see the module)."""
        keys = list(dict.fromkeys(key_hashes))
        raw = self._read(self._counters_script, *keys)
        for attempt in range(MAX_CONFLICTS):
            with self._decoding("counter"):
                serial, size, *last = raw
                counters = Counters(
                    _decode_count(serial) + 1,
                    _decode_count(size),
                    {k: _decode_count(v) + 1 for k, v in zip(keys, last, strict=True)},
                )
            entries = [e.hashed() for e in make(counters)]
            following = check_numbering(counters, entries)
            if not entries:
                return entries
            args: list[Any] = [serial or b"", size or b"", len(keys)]
            for key, value in zip(keys, last, strict=True):
                args += [key, value or b""]
            results = [e for e in entries if e.kind == "result"]
            args += [
                str(results[-1].serial) if results else (serial or b""),
                str(counters.next_leaf + len(entries)),
            ]
            changed = [(k, n - 1) for k, n in following.items() if n != counters.key_serials[k]]
            args.append(len(changed))
            for key, value in changed:
                args += [key, str(value)]
            for e in entries:
                args += _entry_args(e)
            raw = self._write(self._append_script, *args)
            if raw == 1:
                return entries
            if raw == -1:
                pulse = next(e for e in entries if e.kind == "pulse")
                raise PulseExists(f"pulse {pulse.chain_index}/{pulse.pulse_index} exists")
            time.sleep(random.uniform(0, min(_MAX_BACKOFF, _BACKOFF * 2**attempt)))
        raise Unavailable(
            f"{_STORE} is busy: {MAX_CONFLICTS} appends in a row lost to other writers"
        )

    # --- reads ----------------------------------------------------------------

    def _find(self, how: str, *what: Any) -> Entry | None:
        reply = self._read(self._find_script, how, *what)
        if reply is None:
            return None
        with self._decoding("entry"):
            return _entry(*reply)

    def size(self) -> int:
        with self._errors():
            value = self._client.get(f"{self._p}size")
        with self._decoding("counter"):
            return _decode_count(value)

    def entry(self, leaf_index: int) -> Entry | None:
        return None if leaf_index < 0 else self._find("index", int(leaf_index))

    def result(self, serial: int) -> Entry | None:
        return self._find("serial", int(serial))

    def nodes(self, keys: Sequence[tuple[int, int]]) -> list[bytes | None]:
        if not keys:
            return []
        fields = [f"{int(level)}:{int(index)}" for level, index in keys]
        with self._errors():
            values = self._client.hmget(f"{self._p}nodes", fields)
        return [None if v is None else bytes(v) for v in values]

    def put_nodes(self, nodes: Mapping[tuple[int, int], bytes]) -> None:
        if any(level < 1 for level, _ in nodes):
            raise ValueError("level 0 (leaf hashes) is written by append")
        if not nodes:
            return
        args: list[Any] = []
        for (level, index), value in nodes.items():
            args += [f"{int(level)}:{int(index)}", value]
        self._write(self._put_nodes_script, *args)

    def put_head(self, tree_size: int, document: bytes) -> None:
        self._write(self._put_head_script, str(int(tree_size)), document)

    def head(self, tree_size: int | None = None) -> bytes | None:
        size = "" if tree_size is None else str(int(tree_size))
        value = self._read(self._head_script, size)
        return None if value is None else bytes(value)

    def pulse(self, chain_index: int, pulse_index: int) -> Entry | None:
        return self._find("pulse", f"{int(chain_index)}:{int(pulse_index)}")

    def last_pulse(self, chain_index: int | None = None) -> Entry | None:
        if chain_index is None:
            return self._find("last", "+", "-")
        if chain_index < 0:
            return None
        start = _pulse_member(chain_index, 0)[:_PAD]
        return self._find("last", f"({start};", f"[{start}:")

    def pulse_by_time(self, time_ms: int, relation: str) -> Entry | None:
        if relation not in ("at", "before", "after"):
            raise ValueError("relation must be at, before or after")
        return self._find(relation, str(int(time_ms)))

    def register_key(self, key_id: str, document: bytes) -> None:
        self._write(self._register_key_script, key_id, document)

    def public_keys(self) -> list[bytes]:
        return [bytes(v) for v in self._read(self._public_keys_script)]

    def prune(self, before: float) -> int:
        """Drop old results' leaves and documents, a batch per script."""
        dropped = 0
        while True:
            done = int(self._write(self._prune_script, f"({float(before)!r}", _PRUNE_BATCH))
            dropped += done
            if done < _PRUNE_BATCH:
                return dropped

    def close(self) -> None:
        """Close the connections; the ledger stays in Redis."""
        self._closed = True
        self._client.close()
