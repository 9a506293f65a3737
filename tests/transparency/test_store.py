"""The ledger store contract (transparency/store.py) on every engine: memory, SQLite, Redis.

Each test runs on each engine; the memory engine is the reference, and a
property test checks that SQLite and Redis answer every read as it does after
the same appends. Redis tests use the machine's server on 127.0.0.1:6379, each
under a key prefix of its own; one test runs on a real three-node Cluster.
"""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantumrng.config import Settings
from quantumrng.errors import ConfigError, Unavailable
from quantumrng.storage.redis import open_redis
from quantumrng.transparency import open_ledger
from quantumrng.transparency import redis as redis_ledger
from quantumrng.transparency import sqlite as sqlite_ledger
from quantumrng.transparency.merkle import leaf_hash
from quantumrng.transparency.redis import RedisLedger
from quantumrng.transparency.sqlite import SCHEMA_VERSION, SqliteLedger
from quantumrng.transparency.store import (
    ANONYMOUS,
    Counters,
    Entry,
    LedgerStore,
    MemoryLedger,
    PulseExists,
)
from tests.conftest import make_settings
from tests.pool.support import REDIS_URL, delete_prefix, new_prefix, redis_keys, redis_url
from tests.redis_servers import free_port, redis_cluster, redis_server, sentinel_group

ENGINES = ["memory", "sqlite", "redis"]
SHARED = ["sqlite", "redis"]  # engines whose contents outlive the store object

Open = Callable[[], LedgerStore]  # another store object on the same contents


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def reopen(engine: str, tmp_path: Path) -> Iterator[Open]:
    """Opens store objects on one ledger (memory: always the same object)."""
    opened: list[LedgerStore] = []
    prefix = new_prefix()
    memory = MemoryLedger()

    def make() -> LedgerStore:
        store: LedgerStore
        if engine == "memory":
            store = memory
        elif engine == "sqlite":
            store = SqliteLedger(tmp_path / "ledger.sqlite3")
        else:
            store = RedisLedger(redis_url(), prefix=prefix)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
    if engine == "redis":
        delete_prefix(prefix)


@pytest.fixture
def store(reopen: Open) -> LedgerStore:
    return reopen()


# --- entries ------------------------------------------------------------------


def results(counters: Counters, keys: Sequence[str], *, at: float = 1000.0) -> list[Entry]:
    """One result per key in ``keys``, numbered from ``counters``."""
    serial, key_serials, out = counters.next_serial, dict(counters.key_serials), []
    for offset, key in enumerate(keys):
        leaf = f"result {serial} of {key!r} #{key_serials[key]}".encode()
        out.append(
            Entry(
                leaf_index=counters.next_leaf + offset,
                kind="result",
                created_at=at,
                leaf=leaf,
                document=b"{" + leaf + b"}",
                serial=serial,
                key_hash=key,
                key_serial=key_serials[key],
            )
        )
        serial += 1
        key_serials[key] += 1
    return out


def pulse(leaf_index: int, chain: int, index: int, time_ms: int) -> Entry:
    leaf = f"pulse {chain}/{index} at {time_ms}".encode()
    return Entry(
        leaf_index=leaf_index,
        kind="pulse",
        created_at=time_ms / 1000,
        leaf=leaf,
        document=b"{" + leaf + b"}",
        chain_index=chain,
        pulse_index=index,
        time_ms=time_ms,
    )


def add_results(store: LedgerStore, keys: Sequence[str], *, at: float = 1000.0) -> list[Entry]:
    return store.append(set(keys), lambda c: results(c, keys, at=at))


def add_pulse(store: LedgerStore, chain: int, index: int, time_ms: int) -> Entry:
    (stored,) = store.append((), lambda c: [pulse(c.next_leaf, chain, index, time_ms)])
    return stored


def snapshot(store: LedgerStore) -> tuple[Any, ...]:
    """Everything a reader can see of ``store`` (for comparing two engines)."""
    size = store.size()
    entries = [store.entry(i) for i in range(size)]
    serials = [e.serial for e in entries if e is not None and e.serial is not None]
    pulses = [(e.chain_index, e.pulse_index) for e in entries if e is not None and e.time_ms]
    times = [e.time_ms for e in entries if e is not None and e.time_ms is not None]
    probes = sorted({t + d for t in times for d in (-1, 0, 1)} | {0})
    return (
        size,
        entries,
        store.entry(size),
        [store.result(s) for s in [*serials, max(serials, default=0) + 1]],
        store.nodes([(0, i) for i in range(size + 1)]),
        [store.pulse(c, p) for c, p in pulses if c is not None and p is not None],
        store.last_pulse(),
        [store.last_pulse(c) for c in range(4)],
        [store.pulse_by_time(t, r) for t in probes for r in ("at", "before", "after")],
    )


# --- counters and numbering -----------------------------------------------------


def test_counters_start_at_one_and_continue_without_a_gap(store: LedgerStore) -> None:
    seen: list[Counters] = []

    def make(keys: list[str]) -> Callable[[Counters], list[Entry]]:
        def numbered(counters: Counters) -> list[Entry]:
            seen.append(counters)
            return results(counters, keys)

        return numbered

    first = store.append({"a", ANONYMOUS}, make(["a", ANONYMOUS, "a"]))
    second = store.append({"b", "a"}, make(["b", "a"]))
    third = store.append({ANONYMOUS}, make([ANONYMOUS]))
    assert seen == [
        Counters(1, 0, {"a": 1, ANONYMOUS: 1}),
        Counters(4, 3, {"b": 1, "a": 3}),
        Counters(6, 5, {ANONYMOUS: 2}),
    ]
    stored = first + second + third
    assert [e.serial for e in stored] == [1, 2, 3, 4, 5, 6]
    assert [e.leaf_index for e in stored] == [0, 1, 2, 3, 4, 5]
    assert [(e.key_hash, e.key_serial) for e in stored] == [
        ("a", 1), ("", 1), ("a", 2), ("b", 1), ("a", 3), ("", 2),
    ]  # fmt: skip
    assert all(e.leaf is not None and e.leaf_hash == leaf_hash(e.leaf) for e in stored)
    assert store.size() == 6
    assert [store.entry(i) for i in range(6)] == stored
    assert [store.result(s) for s in range(1, 7)] == stored
    assert store.entry(6) is None and store.entry(-1) is None
    assert store.result(0) is None and store.result(7) is None


def test_batches_of_any_size_are_stored_whole_and_read_back(store: LedgerStore) -> None:
    """Sizes around SQLite's multi-row inserts (64 rows at most, then binary digits),
    several keys: every entry, its leaf hash and its numbering read back."""
    keys = ["a", "b", ANONYMOUS]
    stored: list[Entry] = []
    for size in (1, 63, 64, 65, 200):
        batch = [keys[i % 3] for i in range(size)]
        stored += store.append(set(batch), lambda c, batch=batch: results(c, batch))
    assert store.size() == len(stored) == 393
    assert [store.result(e.serial or 0) for e in stored] == stored
    assert store.nodes([(0, e.leaf_index) for e in stored]) == [e.leaf_hash for e in stored]
    per_key = {k: [e.key_serial for e in stored if e.key_hash == k] for k in keys}
    assert all(serials == list(range(1, len(serials) + 1)) for serials in per_key.values())


def test_nodes_read_runs_scattered_keys_and_missing_ones_alike(store: LedgerStore) -> None:
    """A head reads long runs of new leaf hashes; proofs read scattered nodes."""
    stored = add_results(store, ["a"] * 50)
    store.put_nodes({(1, i): bytes([i]) * 32 for i in range(20)})
    keys = [(0, i) for i in range(45, 3, -1)] + [(1, 2), (0, 49), (1, 19), (1, 20), (0, 50)]
    keys += [(0, 7), (2, 0)] + [(1, i) for i in range(17)]
    expected = {(0, e.leaf_index): e.leaf_hash for e in stored}
    expected.update({(1, i): bytes([i]) * 32 for i in range(20)})
    assert store.nodes(keys) == [expected.get(k) for k in keys]


@given(total=st.integers(0, 2000))
def test_sqlite_insert_sizes_add_up_from_a_few_statements(total: int) -> None:
    counts = sqlite_ledger._row_counts(total)
    assert sum(counts) == total
    assert set(counts) <= {64, 32, 16, 8, 4, 2, 1}
    assert counts == sorted(counts, reverse=True)


def test_an_append_of_nothing_stores_nothing(store: LedgerStore) -> None:
    assert store.append({"a"}, lambda c: []) == []
    assert store.size() == 0
    assert add_results(store, ["a"])[0].key_serial == 1


def _first(c: Counters, **changes: Any) -> Entry:
    return replace(results(c, ["a"])[0], **changes)


FLAWS: dict[str, Callable[[Counters], list[Entry]]] = {
    "a leaf index that skips one": lambda c: [_first(c, leaf_index=c.next_leaf + 1)],
    "a leaf index already used": lambda c: [_first(c, leaf_index=c.next_leaf - 1)],
    "a serial that skips one": lambda c: [_first(c, serial=c.next_serial + 1)],
    "a serial already used": lambda c: [_first(c, serial=c.next_serial - 1)],
    "a repeated serial": lambda c: [_first(c), _first(c, leaf_index=c.next_leaf + 1)],
    "a key serial that skips one": lambda c: [_first(c, key_serial=c.key_serials["a"] + 1)],
    "a key serial already used": lambda c: [_first(c, key_serial=c.key_serials["a"] - 1)],
    "a key the append did not ask for": lambda c: [_first(c, key_hash="z")],
    "an entry without its leaf": lambda c: [_first(c, leaf=None)],
    "an unknown kind": lambda c: [_first(c, kind="other")],
    "a pulse without its time": lambda c: [replace(pulse(c.next_leaf, 1, 1, 5), time_ms=None)],
    "a good entry before a bad one": lambda c: [
        _first(c), _first(c, leaf_index=c.next_leaf + 1, serial=c.next_serial + 5)
    ],
}  # fmt: skip


@pytest.mark.parametrize("flaw", list(FLAWS))
def test_bad_numbering_is_refused_with_nothing_stored(store: LedgerStore, flaw: str) -> None:
    add_results(store, ["a"])
    before = snapshot(store)
    with pytest.raises(ValueError):
        store.append({"a"}, FLAWS[flaw])
    assert snapshot(store) == before
    (stored,) = add_results(store, ["a"])
    assert (stored.serial, stored.leaf_index, stored.key_serial) == (2, 1, 2)


def test_a_failing_make_stores_nothing(store: LedgerStore) -> None:
    def fails(counters: Counters) -> list[Entry]:
        raise RuntimeError("signing failed")

    with pytest.raises(RuntimeError):
        store.append({"a"}, fails)
    assert store.size() == 0
    assert add_results(store, ["a"])[0].serial == 1


# --- concurrent writers ---------------------------------------------------------


@pytest.mark.parametrize("engine", ["redis"])
def test_make_runs_again_after_a_writer_appended_meanwhile(reopen: Open) -> None:
    """Optimistic engines: the write notices the counters moved and renumbers."""
    store, other = reopen(), reopen()
    calls: list[Counters] = []

    theirs: list[Entry] = []

    def make(counters: Counters) -> list[Entry]:
        calls.append(counters)
        if len(calls) == 1:
            theirs.extend(add_results(other, ["a", "b"]))
        return results(counters, ["a"], at=2000.0)

    (mine,) = store.append({"a"}, make)
    assert calls == [Counters(1, 0, {"a": 1}), Counters(3, 2, {"a": 2})]
    assert (mine.serial, mine.leaf_index, mine.key_serial) == (3, 2, 2)
    assert [store.result(s) for s in (1, 2, 3)] == [*theirs, mine]
    assert store.size() == 3


@pytest.mark.parametrize("engine", ["redis"])
def test_appends_that_always_lose_the_race_are_unavailable(
    reopen: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_ledger, "MAX_CONFLICTS", 3)
    store, other = reopen(), reopen()
    calls: list[Counters] = []

    def make(counters: Counters) -> list[Entry]:
        calls.append(counters)
        add_results(other, ["a"])
        return results(counters, ["a"])

    with pytest.raises(Unavailable, match="busy"):
        store.append({"a"}, make)
    assert len(calls) == 3
    assert [store.result(s).document for s in (1, 2, 3)] == [  # type: ignore[union-attr]
        e.document for e in (results(c, ["a"])[0] for c in calls)
    ]
    assert store.size() == 3


@pytest.mark.parametrize("engine", ["memory", "sqlite"])
def test_a_writer_during_make_waits_and_numbers_after(reopen: Open) -> None:
    """Locking engines: ``make`` runs under the write lock; another writer waits."""
    store, other = reopen(), reopen()
    theirs: list[Counters] = []
    calls: list[Counters] = []

    def their_make(counters: Counters) -> list[Entry]:
        theirs.append(counters)
        return results(counters, ["a"])

    writer = threading.Thread(target=lambda: other.append({"a"}, their_make))

    def make(counters: Counters) -> list[Entry]:
        calls.append(counters)
        writer.start()
        writer.join(0.3)
        assert writer.is_alive(), "the other writer did not wait for the lock"
        return results(counters, ["a", "b"])

    store.append({"a", "b"}, make)
    writer.join(5)
    assert calls == [Counters(1, 0, {"a": 1, "b": 1})]
    assert theirs == [Counters(3, 2, {"a": 2})]
    assert [e.serial for e in map(store.entry, range(3)) if e] == [1, 2, 3]


APPENDS_PER_WORKER = 100
WORKERS = 4


def append_worker(engine: str, where: str, prefix: str, seed: int, go: Any, out: Any) -> None:
    """A child process: ``APPENDS_PER_WORKER`` one-result appends of random keys."""
    store: LedgerStore = (
        SqliteLedger(where) if engine == "sqlite" else RedisLedger(where, prefix=prefix)
    )
    rng = random.Random(seed)
    mine = []
    go.wait()
    for _ in range(APPENDS_PER_WORKER):
        key = rng.choice(["a", "b", "c", ANONYMOUS])
        (e,) = add_results(store, [key])
        mine.append((e.serial, e.key_hash, e.key_serial, e.leaf_index, e.document))
    store.close()
    out.put(mine)


@pytest.mark.parametrize("engine", SHARED)
def test_appends_from_four_processes_are_numbered_once_without_gaps(
    engine: str, reopen: Open, tmp_path: Path
) -> None:
    store = reopen()  # creates the file / picks the prefix
    where = str(tmp_path / "ledger.sqlite3") if engine == "sqlite" else REDIS_URL
    prefix = store.prefix[1:-1] if isinstance(store, RedisLedger) else ""
    ctx = multiprocessing.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    workers = [
        ctx.Process(target=append_worker, args=(engine, where, prefix, seed, go, out))
        for seed in range(WORKERS)
    ]
    for w in workers:
        w.start()
    go.set()
    done = [row for _ in workers for row in out.get(timeout=60)]
    for w in workers:
        w.join(10)
        assert w.exitcode == 0
    total = WORKERS * APPENDS_PER_WORKER
    assert sorted(serial for serial, *_ in done) == list(range(1, total + 1))
    assert sorted(index for *_, index, _doc in done) == list(range(total))
    for key in {key for _, key, *_ in done}:
        serials = sorted(ks for _, k, ks, *_ in done if k == key)
        assert serials == list(range(1, len(serials) + 1))
    assert store.size() == total
    for serial, key, key_serial, index, document in done:
        found = store.result(serial)
        assert found is not None
        assert (found.key_hash, found.key_serial, found.leaf_index) == (key, key_serial, index)
        assert found.document == document
    assert store.nodes([(0, i) for i in range(total)]) == [
        e.leaf_hash for e in map(store.entry, range(total)) if e
    ]


# --- tree nodes and heads -------------------------------------------------------


def test_append_writes_level_0_and_put_nodes_keeps_existing_values(store: LedgerStore) -> None:
    stored = add_results(store, ["a", "b", "c"])
    assert store.nodes([(0, 2), (0, 0), (0, 3), (1, 0)]) == [
        stored[2].leaf_hash, stored[0].leaf_hash, None, None,
    ]  # fmt: skip
    store.put_nodes({(1, 0): b"\x01" * 32, (2, 5): b"\x02" * 32})
    store.put_nodes({(1, 0): b"\x09" * 32, (1, 1): b"\x03" * 32})
    assert store.nodes([(1, 0), (1, 1), (2, 5), (2, 0), (1, 0)]) == [
        b"\x01" * 32, b"\x03" * 32, b"\x02" * 32, None, b"\x01" * 32,
    ]  # fmt: skip
    with pytest.raises(ValueError):
        store.put_nodes({(0, 0): b"\x05" * 32})
    assert store.nodes([(0, 0)]) == [stored[0].leaf_hash]
    assert store.nodes([]) == []
    store.put_nodes({})


def test_heads_by_size_the_largest_and_the_first_kept(store: LedgerStore) -> None:
    assert store.head() is None and store.head(1) is None
    store.put_head(3, b"head 3")
    store.put_head(10, b"head 10")
    store.put_head(4, b"head 4")
    store.put_head(10, b"another head 10")
    assert store.head() == b"head 10"
    assert [store.head(n) for n in (3, 4, 10, 5)] == [b"head 3", b"head 4", b"head 10", None]


# --- beacon pulses --------------------------------------------------------------


@pytest.fixture
def pulses(store: LedgerStore) -> dict[tuple[int, int], Entry]:
    """Pulses of two chains, with results between them, appended out of index order."""
    made = {}
    for chain, index, time_ms in [(1, 1, 60_000), (1, 2, 120_000), (1, 10, 600_000)]:
        made[chain, index] = add_pulse(store, chain, index, time_ms)
        add_results(store, ["a"])
    made[2, 1] = add_pulse(store, 2, 1, 900_000)
    made[1, 9] = add_pulse(store, 1, 9, 540_000)
    return made


def test_pulses_by_chain_and_index_and_the_last(
    store: LedgerStore, pulses: dict[tuple[int, int], Entry]
) -> None:
    for (chain, index), made in pulses.items():
        assert store.pulse(chain, index) == made
        assert store.entry(made.leaf_index) == made
    assert store.pulse(1, 3) is None and store.pulse(3, 1) is None
    assert store.last_pulse() == pulses[2, 1]
    assert store.last_pulse(1) == pulses[1, 10]
    assert store.last_pulse(2) == pulses[2, 1]
    assert store.last_pulse(0) is None and store.last_pulse(3) is None


@pytest.mark.parametrize(
    ("time_ms", "relation", "expected"),
    [
        (120_000, "at", (1, 2)),
        (120_001, "at", None),
        (120_000, "before", (1, 1)),
        (120_001, "before", (1, 2)),
        (60_000, "before", None),
        (120_000, "after", (1, 9)),
        (119_999, "after", (1, 2)),
        (900_000, "after", None),
        (0, "after", (1, 1)),
        (10**13, "before", (2, 1)),
    ],
)
def test_pulses_by_time(
    store: LedgerStore,
    pulses: dict[tuple[int, int], Entry],
    time_ms: int,
    relation: str,
    expected: tuple[int, int] | None,
) -> None:
    found = store.pulse_by_time(time_ms, relation)
    assert found == (None if expected is None else pulses[expected])


def test_pulse_by_time_refuses_an_unknown_relation(store: LedgerStore) -> None:
    with pytest.raises(ValueError):
        store.pulse_by_time(0, "near")


@pytest.mark.parametrize(
    ("chain", "index", "time_ms"),
    [(1, 2, 130_000), (5, 1, 120_000)],
    ids=["same chain and index", "same time"],
)
def test_a_taken_pulse_is_refused_with_nothing_stored(
    store: LedgerStore, chain: int, index: int, time_ms: int
) -> None:
    add_pulse(store, 1, 2, 120_000)
    before = snapshot(store)

    def make(counters: Counters) -> list[Entry]:
        return [*results(counters, ["a"]), pulse(counters.next_leaf + 1, chain, index, time_ms)]

    with pytest.raises(PulseExists):
        store.append({"a"}, make)
    assert snapshot(store) == before
    assert add_results(store, ["a"])[0].serial == 1


# --- public keys ----------------------------------------------------------------


def test_public_keys_in_the_order_first_published(store: LedgerStore) -> None:
    assert store.public_keys() == []
    store.register_key("k1", b"key 1")
    store.register_key("k2", b"key 2")
    store.register_key("k1", b"key 1, retired")
    store.register_key("k3", b"key 3")
    assert store.public_keys() == [b"key 1, retired", b"key 2", b"key 3"]


# --- retention ------------------------------------------------------------------


def test_prune_drops_only_old_results_leaves_and_documents(store: LedgerStore) -> None:
    old = add_results(store, ["a", "b"], at=100.0)
    old_pulse = add_pulse(store, 1, 1, 50_000)
    new = add_results(store, ["a"], at=300.0)
    assert store.prune(250.0) == 2
    for e in old:
        pruned = store.result(e.serial or 0)
        assert pruned == replace(e, leaf=None, document=None)
        assert store.entry(e.leaf_index) == pruned
    assert store.result(new[0].serial or 0) == new[0]
    assert store.pulse(1, 1) == old_pulse
    assert store.nodes([(0, i) for i in range(4)]) == [e.leaf_hash for e in (*old, old_pulse, *new)]
    assert store.prune(250.0) == 0
    assert store.prune(300.0) == 0  # strictly before
    assert store.prune(301.0) == 1
    assert add_results(store, ["a"])[0].key_serial == 3


# --- persistence ----------------------------------------------------------------


@pytest.mark.parametrize("engine", SHARED)
def test_contents_survive_close_and_reopen(reopen: Open) -> None:
    store = reopen()
    add_results(store, ["a", ANONYMOUS])
    add_pulse(store, 1, 1, 60_000)
    store.put_nodes({(1, 0): b"\x01" * 32})
    store.put_head(3, b"head 3")
    store.register_key("k1", b"key 1")
    before = snapshot(store)
    store.close()
    with pytest.raises(Unavailable):
        store.size()
    again = reopen()
    assert snapshot(again) == before
    assert again.nodes([(1, 0)]) == [b"\x01" * 32]
    assert again.head() == b"head 3"
    assert again.public_keys() == [b"key 1"]
    (e,) = add_results(again, ["a"])
    assert (e.serial, e.leaf_index, e.key_serial) == (3, 3, 2)


def test_a_redis_restart_keeps_the_ledger_with_appendonly() -> None:
    with redis_server(persistent=True) as server:
        store = RedisLedger(server.url, prefix="restart")
        stored = add_results(store, ["a"])
        server.restart(crash=True)
        assert store.result(1) == stored[0]
        assert add_results(store, ["a"])[0].serial == 2
        store.close()


def test_sqlite_refuses_a_file_of_an_unknown_schema(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    SqliteLedger(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(ConfigError, match="unknown schema"):
        SqliteLedger(path)


def test_sqlite_rejects_a_second_pulse_row_even_past_the_store(tmp_path: Path) -> None:
    """The unique indexes hold for any writer of the file, not only through append."""
    path = tmp_path / "ledger.sqlite3"
    store = SqliteLedger(path)
    add_pulse(store, 1, 1, 60_000)
    add_results(store, ["a"])
    conn = sqlite3.connect(path)
    for column, value in [("chain_index, pulse_index", "1, 1"), ("time_ms", "60000"),
                          ("serial", "1"), ("key_hash, key_serial", "'a', 1")]:  # fmt: skip
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(
                f"INSERT INTO entries (leaf_index, kind, created_at, leaf_hash, {column})"
                f" VALUES (99, 'pulse', 0, x'00', {value})"
            )
    conn.close()
    store.close()


# --- opening --------------------------------------------------------------------


def test_open_ledger_follows_the_pool(tmp_path: Path) -> None:
    memory = open_ledger(make_settings(tmp_path, pool="memory"))
    assert isinstance(memory, MemoryLedger)
    sqlite_settings = make_settings(tmp_path, pool="sqlite")
    on_disk = open_ledger(sqlite_settings)
    assert isinstance(on_disk, SqliteLedger)
    assert on_disk.path == sqlite_settings.ledger_path
    assert sqlite_settings.ledger_path.stat().st_mode & 0o777 == 0o600
    on_disk.close()
    prefix = new_prefix()
    shared = open_ledger(make_settings(tmp_path, pool="redis", redis_url=redis_url(),
                                       redis_key=prefix))  # fmt: skip
    try:
        assert isinstance(shared, RedisLedger)
        add_results(shared, ["a"])
        assert redis_keys(prefix) and all(k.startswith(":log:") for k in redis_keys(prefix))
    finally:
        shared.close()
        delete_prefix(prefix)


def test_an_unreachable_redis_is_unavailable_and_names_no_password() -> None:
    password = "pa55-w0rd-never-shown"
    url = f"redis://qrng:{password}@127.0.0.1:{free_port()}/0"
    store = RedisLedger(url, prefix=new_prefix())
    calls: list[Counters] = []

    def make(counters: Counters) -> list[Entry]:
        calls.append(counters)
        return results(counters, ["a"])

    for call in (
        store.size,
        lambda: store.append({"a"}, make),
        lambda: store.put_head(1, b"head"),
        lambda: store.result(1),
    ):
        with pytest.raises(Unavailable) as failure:
            call()
        assert password not in str(failure.value)
        assert password not in repr(failure.value)
    assert calls == []
    assert password not in repr(store)
    store.close()


def test_a_redis_failing_mid_append_is_unavailable_and_not_retried() -> None:
    """A write whose outcome is unknown is never sent again: the caller answers 503."""
    with redis_server(persistent=False) as server:
        store = RedisLedger(server.url, prefix="fails")
        calls: list[Counters] = []

        def make(counters: Counters) -> list[Entry]:
            calls.append(counters)
            server.kill()
            return results(counters, ["a"])

        with pytest.raises(Unavailable, match="ConnectionError"):
            store.append({"a"}, make)
        assert len(calls) == 1
        store.close()


# --- the engines agree ----------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("results"), st.lists(st.sampled_from(["a", "b", ""]), max_size=4),
                  st.sampled_from([100.0, 200.0])),
        st.tuples(st.just("pulse"), st.integers(0, 3), st.integers(0, 12),
                  st.integers(0, 40).map(lambda t: t * 1000)),
        st.tuples(st.just("prune"), st.sampled_from([150.0, 250.0])),
    ),
    max_size=12,
)  # fmt: skip


def apply(store: LedgerStore, ops: list[tuple[Any, ...]]) -> list[str]:
    outcomes = []
    for op in ops:
        try:
            if op[0] == "results":
                add_results(store, op[1], at=op[2])
            elif op[0] == "pulse":
                add_pulse(store, *op[1:])
            else:
                outcomes.append(str(store.prune(op[1])))
                continue
            outcomes.append("ok")
        except PulseExists:
            outcomes.append("exists")
    return outcomes


@pytest.mark.parametrize("engine", SHARED)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=operations)
def test_engines_answer_as_the_memory_reference(
    engine: str, tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[Any, ...]]
) -> None:
    reference = MemoryLedger()
    expected = apply(reference, ops)
    prefix = new_prefix()
    store: LedgerStore = (
        SqliteLedger(tmp_path_factory.mktemp("ledger") / "ledger.sqlite3")
        if engine == "sqlite"
        else RedisLedger(redis_url(), prefix=prefix)
    )
    try:
        assert apply(store, ops) == expected
        assert snapshot(store) == snapshot(reference)
    finally:
        store.close()
        if engine == "redis":
            delete_prefix(prefix)


# --- a real Redis Cluster -------------------------------------------------------


def test_the_ledger_on_a_redis_cluster() -> None:
    """Every key in the one slot of the hash tag; appends, conflicts and reads work."""
    with redis_cluster() as cluster:
        settings = Settings(
            pool="redis", redis_url=cluster.url, redis_cluster=True, redis_key="cluster-ledger"
        )
        store, other = open_ledger(settings), open_ledger(settings)
        calls: list[Counters] = []

        def make(counters: Counters) -> list[Entry]:
            calls.append(counters)
            if len(calls) == 1:
                add_results(other, ["a"])
            return results(counters, ["a", "b"])

        store.append({"a", "b"}, make)
        add_pulse(store, 1, 1, 60_000)
        store.put_nodes({(1, 0): b"\x01" * 32})
        store.put_head(4, b"head 4")
        store.register_key("k1", b"key 1")
        assert calls[-1] == Counters(2, 1, {"a": 2, "b": 1})
        assert [e.serial for e in map(store.entry, range(3)) if e] == [1, 2, 3]
        assert store.last_pulse() == store.pulse_by_time(60_000, "at") == store.entry(3)
        assert store.nodes([(1, 0), (0, 3)]) == [b"\x01" * 32, store.entry(3).leaf_hash]  # type: ignore[union-attr]
        assert store.head() == b"head 4" and store.public_keys() == [b"key 1"]
        assert store.prune(2000.0) == 3
        client = open_redis(settings)
        slots = {client.keyslot(k) for k in client.keys("{cluster-ledger}:*")}
        assert len(slots) == 1
        for s in (store, other):
            s.close()
        client.close()


@pytest.mark.slow  # a master, a replica and three Sentinels take several seconds to settle
def test_the_ledger_on_a_sentinel_master_waits_for_the_replica() -> None:
    """Every write is confirmed by the replica (``WAIT``): it is there when read from it."""
    with sentinel_group("qrng-ledger") as group:
        settings = Settings(pool="redis", redis_url=group.url(), redis_key="sentinel-ledger")
        store = open_ledger(settings)
        add_results(store, ["a", "b"])
        add_pulse(store, 1, 1, 60_000)
        store.put_nodes({(1, 0): b"\x01" * 32})
        store.put_head(3, b"head 3")
        store.register_key("k1", b"key 1")
        assert store.prune(2000.0) == 2
        before = snapshot(store)
        replica = RedisLedger(group.current_replica().url, prefix="sentinel-ledger")
        assert snapshot(replica) == before
        assert replica.head() == b"head 3" and replica.public_keys() == [b"key 1"]
        assert replica.nodes([(1, 0)]) == [b"\x01" * 32]
        replica.close()
        store.close()


def test_an_entry_without_a_document_reads_back_without_one(store: LedgerStore) -> None:
    (stored,) = store.append({ANONYMOUS}, lambda c: [
        replace(results(c, [ANONYMOUS])[0], document=None)
    ])  # fmt: skip
    assert store.result(1) == stored and stored.document is None and stored.leaf is not None
    assert store.prune(2000.0) == 0  # nothing left to drop
    assert store.result(1) == stored
