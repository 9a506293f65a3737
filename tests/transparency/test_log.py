"""The transparency log: gap-free signed results, group commit, heads and proofs."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from quantumrng.errors import NotFound, Unavailable, ValidationError
from quantumrng.pool.memory import MemoryPool
from quantumrng.signed import PublicKey, canonical, hash_api_key, verify_signed
from quantumrng.signing import KeyRing, SigningKey
from quantumrng.transparency import merkle
from quantumrng.transparency.log import SignedResult, SignRequest, TransparencyLog
from quantumrng.transparency.store import (
    Counters,
    Entry,
    LedgerStore,
    MemoryLedger,
    PulseExists,
)
from quantumrng.transparency.verify import (
    check_consistency,
    check_inclusion,
    tree_head_data,
    verify_head,
)
from tests.pool.support import delete_prefix, new_prefix, redis_url

ENGINES = ["memory", "sqlite", "redis"]


def make_keys() -> KeyRing:
    private = Ed25519PrivateKey.generate()
    entry = PublicKey(private.public_key(), time.time() - 60)
    return KeyRing(SigningKey(private, entry), [entry])


def _engine(engine: str, tmp_path: Path, prefix: str) -> LedgerStore:
    """A store object on the ledger of this test (memory: a new, empty one)."""
    if engine == "memory":
        return MemoryLedger()
    try:
        if engine == "sqlite":
            from quantumrng.transparency.sqlite import SqliteLedger

            return SqliteLedger(tmp_path / "ledger.sqlite3")
        from quantumrng.transparency.redis import RedisLedger
    except ImportError:
        pytest.skip(f"the {engine} ledger store is not in this checkout")
    return RedisLedger(redis_url(), prefix=prefix)


@pytest.fixture(params=ENGINES)
def open_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], LedgerStore]]:
    """Opens store objects on one ledger: again (SQLite, Redis), or the same one (memory)."""
    engine = str(request.param)
    opened: list[LedgerStore] = []
    prefix = new_prefix()

    def open_() -> LedgerStore:
        if opened and engine == "memory":
            return opened[0]
        store = _engine(engine, tmp_path, prefix)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()
    if engine == "redis":
        delete_prefix(prefix)


@pytest.fixture
def store(open_store: Callable[[], LedgerStore]) -> LedgerStore:
    return open_store()


@pytest.fixture
def keys() -> KeyRing:
    return make_keys()


@pytest.fixture
def tlog(store: LedgerStore, keys: KeyRing) -> Iterator[TransparencyLog]:
    log = TransparencyLog(store, keys, head_seconds=0.05)
    yield log
    log.stop()


def request(n: int = 0, key: str | None = None) -> SignRequest:
    return SignRequest(
        method="integers",
        parameters={"n": 1, "min": 0, "max": 9, "mode": "drbg"},
        data=[n % 10],
        provenance={"kind": "simulator", "harvests": ["x"]},
        hashed_api_key=hash_api_key(key),
    )


# -- signing ------------------------------------------------------------------


def test_a_signed_result_verifies_and_its_leaf_is_exactly_the_signed_bytes(
    tlog: TransparencyLog, keys: KeyRing, store: LedgerStore
) -> None:
    [signed] = tlog.sign_batch([request(7, "k")])
    assert verify_signed(signed.signed, keys.public_keys).valid
    result = signed.signed["result"]
    assert result["serial"] == 1 and result["key_serial"] == 1
    assert result["hashed_api_key"] == hash_api_key("k")
    assert result["key_id"] == keys.current.key_id
    entry = store.entry(signed.leaf_index)
    assert entry is not None and entry.leaf == canonical(result)
    assert store.nodes([(0, signed.leaf_index)]) == [merkle.leaf_hash(canonical(result))]


def test_a_stored_result_is_returned_by_serial_as_signed(tlog: TransparencyLog) -> None:
    first, second = tlog.sign_batch([request(1), request(2)])
    assert tlog.result(2) == {"signed": second.signed, "log_index": second.leaf_index}
    assert tlog.result(1) == {"signed": first.signed, "log_index": first.leaf_index}
    assert tlog.result(3) is None


def test_a_pruned_result_is_no_longer_returned(tlog: TransparencyLog, store: LedgerStore) -> None:
    tlog.sign_batch([request()])
    assert store.prune(time.time() + 1) == 1
    assert tlog.result(1) is None


def test_tampering_with_any_field_of_a_signed_result_fails_verification(
    tlog: TransparencyLog, keys: KeyRing
) -> None:
    [signed] = tlog.sign_batch([request(3, "k")])
    changes: dict[str, Any] = {
        "data": [4],
        "parameters": {"n": 2},
        "serial": 2,
        "key_serial": 2,
        "completion_time": "2020-01-01T00:00:00.000000Z",
        "provenance": {"kind": "ibm"},
        "method": "bits",
        "hashed_api_key": "",
    }
    for field, value in changes.items():
        forged = json.loads(json.dumps(signed.signed))
        forged["result"][field] = value
        assert not verify_signed(forged, keys.public_keys).valid, field


def test_serials_are_gap_free_globally_and_per_key_under_threads(
    tlog: TransparencyLog, store: LedgerStore
) -> None:
    out: list[SignedResult] = []
    lock = threading.Lock()

    def work(thread: int) -> None:
        for i in range(50):
            [r] = tlog.sign_batch([request(i, f"key{thread % 3}")])
            with lock:
                out.append(r)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.serial for r in out) == list(range(1, 401))
    assert sorted(r.leaf_index for r in out) == list(range(400))
    by_key: dict[str, list[int]] = {}
    for r in out:
        by_key.setdefault(r.signed["result"]["hashed_api_key"], []).append(r.key_serial)
    assert sorted(len(v) for v in by_key.values()) == [100, 150, 150]
    for serials in by_key.values():
        assert sorted(serials) == list(range(1, len(serials) + 1))
    assert store.size() == 400


def test_key_serials_continue_per_key_across_batches(tlog: TransparencyLog) -> None:
    a = tlog.sign_batch([request(0, "a"), request(0, "b"), request(0, "a")])
    b = tlog.sign_batch([request(0, "b"), request(0)])
    assert [(r.serial, r.key_serial) for r in a + b] == [(1, 1), (2, 1), (3, 2), (4, 2), (5, 1)]


def test_a_request_jcs_cannot_encode_is_refused_and_nothing_is_stored(
    tlog: TransparencyLog, store: LedgerStore
) -> None:
    bad = SignRequest("integers", {"n": 1}, [2**60], {}, "")
    with pytest.raises(ValueError):
        tlog.sign_batch([request(), bad])
    assert store.size() == 0


class CountingLedger(MemoryLedger):
    """A memory ledger that counts appends, and fails them on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.appends = 0
        self.fail = False
        self.slow = 0.0

    def append(
        self, key_hashes: Collection[str], make: Callable[[Counters], Sequence[Entry]]
    ) -> list[Entry]:
        self.appends += 1
        time.sleep(self.slow)
        if self.fail:
            raise Unavailable("the ledger store is down")
        return super().append(key_hashes, make)


async def _sign_all(log: TransparencyLog, count: int) -> list[SignedResult]:
    return list(await asyncio.gather(*(log.sign(request(i)) for i in range(count))))


def test_concurrent_signs_are_appended_together() -> None:
    ledger = CountingLedger()
    ledger.slow = 0.01
    log = TransparencyLog(ledger, make_keys())
    try:
        results = asyncio.run(_sign_all(log, 200))
    finally:
        log.stop()
    assert sorted(r.serial for r in results) == list(range(1, 201))
    assert ledger.appends <= 10  # one per batch, not one per request
    assert log.batches == ledger.appends


def test_signs_from_several_event_loops_in_threads_share_one_numbering() -> None:
    ledger = CountingLedger()
    log = TransparencyLog(ledger, make_keys())
    out: list[SignedResult] = []

    def work() -> None:
        out.extend(asyncio.run(_sign_all(log, 50)))

    threads = [threading.Thread(target=work) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        log.stop()
    assert sorted(r.serial for r in out) == list(range(1, 201))
    assert not any(t.name == "qrng-log-commit" for t in threading.enumerate())


def test_a_failed_append_fails_every_waiting_sign_and_stores_nothing() -> None:
    ledger = CountingLedger()
    ledger.fail = True
    log = TransparencyLog(ledger, make_keys())

    async def run() -> list[SignedResult | BaseException]:
        return list(
            await asyncio.gather(*(log.sign(request(i)) for i in range(20)), return_exceptions=True)
        )

    try:
        outcomes = asyncio.run(run())
        assert all(isinstance(o, Unavailable) for o in outcomes)
        assert ledger.size() == 0
        ledger.fail = False
        after = asyncio.run(_sign_all(log, 3))
    finally:
        log.stop()
    assert [r.serial for r in after] == [1, 2, 3]


def test_a_bad_request_fails_alone_in_its_batch() -> None:
    log = TransparencyLog(MemoryLedger(), make_keys())
    bad = SignRequest("integers", {"n": 1}, [float("nan")], {}, "")

    async def run() -> list[SignedResult | BaseException]:
        calls = [log.sign(request(1)), log.sign(bad), log.sign(request(2))]
        return list(await asyncio.gather(*calls, return_exceptions=True))

    try:
        good1, failed, good2 = asyncio.run(run())
    finally:
        log.stop()
    assert isinstance(failed, ValueError)
    assert isinstance(good1, SignedResult) and isinstance(good2, SignedResult)
    assert sorted([good1.serial, good2.serial]) == [1, 2]


def test_signed_results_continue_after_a_restart_over_the_same_store(
    open_store: Callable[[], LedgerStore], keys: KeyRing
) -> None:
    store = open_store()
    first = TransparencyLog(store, keys)
    first.sign_batch([request(0, "a"), request(0, "a")])
    head = first.publish_head()
    first.stop()
    again = TransparencyLog(open_store(), keys)
    [r] = again.sign_batch([request(0, "a")])
    assert (r.serial, r.key_serial, r.leaf_index) == (3, 3, 2)
    later = again.publish_head()
    assert later["tree_size"] == 3
    proof = again.consistency_proof(head["tree_size"], later["tree_size"])
    assert check_consistency(proof, head, later)
    again.stop()


def test_pulses_are_appended_as_leaves_and_a_taken_pulse_is_refused(
    tlog: TransparencyLog, store: LedgerStore
) -> None:
    tlog.sign_batch([request()])
    entry = tlog.append_pulse(1, 1, 60_000, b"pulse bytes", b'{"pulse":{}}')
    assert entry.leaf_index == 1 and entry.leaf_hash == merkle.leaf_hash(b"pulse bytes")
    with pytest.raises(PulseExists):
        tlog.append_pulse(1, 1, 120_000, b"other", b"{}")
    assert store.size() == 2
    tlog.publish_head()
    proof = tlog.entry_proof(1)
    assert check_inclusion(proof, tlog.head(), b"pulse bytes")


# -- heads ----------------------------------------------------------------------


def test_the_empty_log_has_a_signed_head_of_the_empty_tree(
    tlog: TransparencyLog, keys: KeyRing
) -> None:
    head = tlog.head()
    assert head["tree_size"] == 0
    assert head["root_hash"] == merkle.EMPTY_ROOT.hex()
    assert verify_head(head, keys.public_keys)


def test_a_head_signs_the_rfc9162_tree_head_data_and_fails_when_any_field_changes(
    tlog: TransparencyLog, keys: KeyRing
) -> None:
    tlog.sign_batch([request(i) for i in range(5)])
    head = tlog.publish_head()
    assert set(head) == {"tree_size", "root_hash", "timestamp", "key_id", "signature"}
    assert head["tree_size"] == 5 and isinstance(head["timestamp"], int)
    assert head["root_hash"] == head["root_hash"].lower()
    signature = base64.b64decode(head["signature"])
    data = tree_head_data(head["timestamp"], 5, bytes.fromhex(head["root_hash"]))
    assert len(data) == 51
    keys.current.public.key.verify(signature, data)
    assert verify_head(head, keys.public_keys)
    other = make_keys()
    forged_signature = base64.b64encode(other.current.sign(data)).decode()
    changes: dict[str, Any] = {
        "tree_size": 6,
        "root_hash": "00" * 32,
        "timestamp": head["timestamp"] + 1,
        "key_id": other.current.key_id,
        "signature": forged_signature,
    }
    for field, value in changes.items():
        assert not verify_head({**head, field: value}, keys.public_keys), field
    assert not verify_head({**head, "extra": 1}, keys.public_keys)
    assert not verify_head(head, other.public_keys)


def test_heads_are_stored_and_grow_with_the_log(tlog: TransparencyLog, store: LedgerStore) -> None:
    tlog.sign_batch([request()])
    first = tlog.publish_head()
    assert tlog.publish_head() == first  # no growth, no new head
    tlog.sign_batch([request(), request()])
    second = tlog.publish_head()
    assert second["tree_size"] == 3 and second["timestamp"] >= first["timestamp"]
    assert json.loads(store.head(1) or b"") == first
    assert tlog.head() == second


def test_the_head_thread_publishes_heads_as_the_log_grows(
    tlog: TransparencyLog, keys: KeyRing
) -> None:
    tlog.start()
    tlog.sign_batch([request(i) for i in range(3)])
    deadline = time.monotonic() + 5
    while tlog.head()["tree_size"] < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert tlog.head()["tree_size"] == 3
    assert verify_head(tlog.head(), keys.public_keys)
    tlog.stop()
    assert not any(t.name == "qrng-log-heads" for t in threading.enumerate())


def test_only_the_holder_of_the_log_lease_signs_heads(keys: KeyRing) -> None:
    pool = MemoryPool()
    ledger = MemoryLedger()
    leader = TransparencyLog(ledger, keys, pool=pool, node="a", head_seconds=0.05)
    follower = TransparencyLog(ledger, keys, pool=pool, node="b", head_seconds=0.05)
    leader.start()
    deadline = time.monotonic() + 5
    while not leader.leads and time.monotonic() < deadline:
        time.sleep(0.02)
    follower.start()
    try:
        time.sleep(0.2)
        assert leader.leads and not follower.leads
        follower.sign_batch([request()])
        while follower.head()["tree_size"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert follower.head()["tree_size"] == 1
    finally:
        leader.stop()
        follower.stop()


# -- proofs ---------------------------------------------------------------------


def _filled(tlog: TransparencyLog, sizes: Sequence[int]) -> list[dict[str, Any]]:
    """Append in steps, publishing a head after each; return the heads."""
    heads = []
    done = tlog.store.size()
    for size in sizes:
        tlog.sign_batch([request(i) for i in range(size - done)])
        heads.append(tlog.publish_head())
        done = size
    return heads


def test_every_result_has_an_inclusion_proof_in_every_later_head(
    tlog: TransparencyLog, store: LedgerStore, keys: KeyRing
) -> None:
    heads = _filled(tlog, [1, 2, 3, 5, 8, 13, 21])
    leaves = [store.nodes([(0, i)])[0] or b"" for i in range(21)]
    for head in heads:
        size = head["tree_size"]
        assert head["root_hash"] == merkle.mth(leaves[:size]).hex()
        for serial in range(1, size + 1):
            proof = tlog.inclusion_proof(serial, size)
            assert proof["leaf_index"] == serial - 1 and proof["tree_size"] == size
            entry = store.result(serial)
            assert entry is not None and entry.leaf is not None
            assert check_inclusion(proof, head, entry.leaf)
            assert not check_inclusion(proof, head, entry.leaf + b" ")


def test_an_inclusion_proof_defaults_to_the_latest_head(tlog: TransparencyLog) -> None:
    [head] = _filled(tlog, [6])
    proof = tlog.inclusion_proof(4)
    assert proof["tree_size"] == 6 and check_inclusion(proof, head)
    assert set(proof) == {"leaf_index", "tree_size", "leaf_hash", "audit_path"}


def test_a_serial_not_in_a_signed_head_yet_is_not_found_with_a_reason(
    tlog: TransparencyLog,
) -> None:
    _filled(tlog, [2])
    tlog.sign_batch([request()])
    with pytest.raises(NotFound, match="serial 3 is not in the signed tree of size 2"):
        tlog.inclusion_proof(3)
    with pytest.raises(NotFound, match="no result has serial 99"):
        tlog.inclusion_proof(99)
    with pytest.raises(NotFound, match="tree size 3 has no signed tree head yet"):
        tlog.inclusion_proof(1, 3)
    with pytest.raises(ValidationError):
        tlog.inclusion_proof(1, 0)
    with pytest.raises(ValidationError):
        tlog.inclusion_proof(0)
    with pytest.raises(NotFound):
        tlog.inclusion_proof(2, 1)


def test_consistency_proofs_hold_between_every_pair_of_heads(tlog: TransparencyLog) -> None:
    heads = _filled(tlog, [1, 2, 3, 4, 7, 8, 9, 16, 17])
    for i, first in enumerate(heads):
        for second in heads[i:]:
            proof = tlog.consistency_proof(first["tree_size"], second["tree_size"])
            assert set(proof) == {"first", "second", "proof"}
            assert check_consistency(proof, first, second)
            if first["tree_size"] < second["tree_size"]:
                assert not check_consistency(proof, second, first)


def test_bad_consistency_sizes_are_refused(tlog: TransparencyLog) -> None:
    _filled(tlog, [4])
    for first, second in [(0, 4), (3, 2), (-1, 1)]:
        with pytest.raises(ValidationError):
            tlog.consistency_proof(first, second)
    with pytest.raises(NotFound):
        tlog.consistency_proof(2, 5)


def test_a_log_rewritten_between_two_heads_fails_the_consistency_check(
    keys: KeyRing,
) -> None:
    honest = TransparencyLog(MemoryLedger(), keys)
    seen = _filled(honest, [5])[0]
    rewritten = TransparencyLog(MemoryLedger(), keys)  # same key, history changed
    rewritten.sign_batch([request(i) for i in range(4)])
    rewritten.sign_batch([request(99)])  # result 5 differs
    rewritten.sign_batch([request(i) for i in range(3)])
    later = rewritten.publish_head()
    proof = rewritten.consistency_proof(5, 8)
    assert verify_head(later, keys.public_keys)
    assert not check_consistency(proof, seen, later)
    honest.sign_batch([request(i) for i in range(3)])
    honest_later = honest.publish_head()
    assert check_consistency(honest.consistency_proof(5, 8), seen, honest_later)


def test_a_tampered_stored_leaf_fails_its_inclusion_check(
    tlog: TransparencyLog, store: LedgerStore
) -> None:
    [head] = _filled(tlog, [7])
    entry = store.result(3)
    assert entry is not None and entry.leaf is not None
    proof = tlog.inclusion_proof(3)
    result = json.loads(entry.leaf)
    result["data"] = [9, 9]
    assert not check_inclusion(proof, head, canonical(result))
    forged = {**proof, "leaf_hash": merkle.leaf_hash(canonical(result)).hex()}
    assert not check_inclusion(forged, head)


def test_an_integration_gap_in_the_store_is_an_error_not_a_wrong_root(keys: KeyRing) -> None:
    class Forgetful(MemoryLedger):
        forgotten: frozenset[tuple[int, int]] = frozenset()

        def nodes(self, keys_: Sequence[tuple[int, int]]) -> list[bytes | None]:
            found = super().nodes(keys_)
            return [None if k in self.forgotten else v for k, v in zip(keys_, found, strict=True)]

    store = Forgetful()
    log = TransparencyLog(store, keys)
    log.sign_batch([request(i) for i in range(4)])
    assert log.publish_head()["tree_size"] == 4
    store.forgotten = frozenset({(2, 0)})
    log.sign_batch([request(i) for i in range(4)])
    with pytest.raises(Unavailable, match="missing nodes"):
        log.publish_head()


# -- encoding -------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


HYPOTHESIS_KEYS = make_keys()


@settings(max_examples=200, deadline=None)
@given(
    method=st.text(),
    parameters=st.dictionaries(st.text(), json_values, max_size=4),
    data=json_values,
    provenance=st.dictionaries(st.text(), json_values, max_size=4),
    key=st.text(),
)
def test_the_leaf_is_the_rfc8785_encoding_of_the_signed_result_whatever_it_holds(
    method: str, parameters: dict[str, Any], data: Any, provenance: dict[str, Any], key: str
) -> None:
    ledger = MemoryLedger()
    log = TransparencyLog(ledger, HYPOTHESIS_KEYS)
    [signed] = log.sign_batch([SignRequest(method, parameters, data, provenance, key)])
    entry = ledger.entry(signed.leaf_index)
    assert entry is not None
    assert entry.leaf == canonical(signed.signed["result"])
    assert verify_signed(signed.signed, HYPOTHESIS_KEYS.public_keys).valid


def test_signs_from_starlette_test_clients_each_on_its_own_loop(keys: KeyRing) -> None:
    ledger = CountingLedger()
    log = TransparencyLog(ledger, keys)

    async def sign(request_: Request) -> JSONResponse:
        signed = await log.sign(request(int(request_.query_params["n"])))
        return JSONResponse(signed.signed)

    app = Starlette(routes=[Route("/sign", sign)])
    try:
        with TestClient(app) as first, TestClient(app) as second:
            answers = [c.get("/sign", params={"n": n}) for n in range(6) for c in (first, second)]
    finally:
        log.stop()
    serials = sorted(a.json()["result"]["serial"] for a in answers)
    assert serials == list(range(1, 13))
    assert all(verify_signed(a.json(), keys.public_keys).valid for a in answers)


def test_a_leaf_rewritten_in_the_store_after_a_head_fails_its_inclusion_check(
    keys: KeyRing,
) -> None:
    class Rewriting(MemoryLedger):
        """A store whose writer replaced result 3 (its leaf and its leaf hash)."""

        forged: bytes | None = None

        def result(self, serial: int) -> Entry | None:
            entry = super().result(serial)
            if entry is None or serial != 3 or self.forged is None:
                return entry
            return dataclasses.replace(entry, leaf=self.forged, leaf_hash=b"")

        def nodes(self, keys_: Sequence[tuple[int, int]]) -> list[bytes | None]:
            found = super().nodes(keys_)
            if self.forged is None:
                return found
            forged = merkle.leaf_hash(self.forged)
            return [forged if k == (0, 2) else v for k, v in zip(keys_, found, strict=True)]

    store = Rewriting()
    log = TransparencyLog(store, keys)
    [head] = _filled(log, [6])
    entry = store.result(3)
    assert entry is not None and entry.leaf is not None
    result = json.loads(entry.leaf)
    result["data"] = [0]
    store.forged = canonical(result)
    proof = log.inclusion_proof(3)
    assert proof["leaf_hash"] == merkle.leaf_hash(store.forged).hex()
    assert not check_inclusion(proof, head, store.forged)
    log.sign_batch([request()])
    later = log.publish_head()  # the upper nodes were stored before the rewrite
    assert check_consistency(log.consistency_proof(6, 7), head, later)
    assert not check_inclusion(log.inclusion_proof(3), later, store.forged)


def test_no_head_is_signed_over_a_store_that_lost_entries_or_changed_its_tree(
    keys: KeyRing,
) -> None:
    class Damaged(MemoryLedger):
        shrunk = False
        changed: frozenset[tuple[int, int]] = frozenset()

        def size(self) -> int:
            return super().size() - 1 if self.shrunk else super().size()

        def nodes(self, keys_: Sequence[tuple[int, int]]) -> list[bytes | None]:
            found = super().nodes(keys_)
            return [
                bytes(32) if k in self.changed else v for k, v in zip(keys_, found, strict=True)
            ]

    store = Damaged()
    log = TransparencyLog(store, keys)
    [head] = _filled(log, [4])
    store.shrunk = True
    with pytest.raises(Unavailable, match="entries were lost"):
        log.publish_head()
    store.shrunk = False
    store.changed = frozenset({(2, 0)})
    log.sign_batch([request()])
    with pytest.raises(Unavailable, match="no longer matches"):
        log.publish_head()
    assert log.head() == head


# -- what makes signing fast keeps the bytes exact ----------------------------------


def test_the_stored_document_has_the_signed_bytes_themselves_as_its_result(
    tlog: TransparencyLog, store: LedgerStore
) -> None:
    [signed] = tlog.sign_batch([request(3, "k")])
    entry = store.result(signed.serial)
    assert entry is not None and entry.leaf is not None and entry.document is not None
    assert entry.document.startswith(b'{"signed":{"result":' + entry.leaf + b',"signature":')
    assert json.loads(entry.document) == {"signed": signed.signed, "log_index": signed.leaf_index}
    assert entry.leaf_hash == merkle.leaf_hash(entry.leaf)


def _with_provenance(provenance: dict[str, Any]) -> SignRequest:
    return dataclasses.replace(request(), provenance=provenance)


def test_provenances_equal_as_python_values_but_not_as_json_are_encoded_apart() -> None:
    """``False == 0`` in Python, not in JSON: each result signs its own provenance, and
    a provenance changed in place is encoded anew."""
    log = TransparencyLog(MemoryLedger(), HYPOTHESIS_KEYS)
    shared = {"kind": "os", "quantum": False, "seeded_at": 1796271675.5}
    results = log.sign_batch([_with_provenance(shared), _with_provenance({**shared, "quantum": 0})])
    shared["seeded_at"] = 1796271699.25
    results += log.sign_batch([_with_provenance(shared)])
    leaves = [canonical(r.signed["result"]) for r in results]
    assert b'"quantum":false' in leaves[0] and b'"quantum":0' in leaves[1]
    assert b'"seeded_at":1796271699.25' in leaves[2]
    for r in results:
        entry = log.store.result(r.serial)
        assert entry is not None and entry.leaf == canonical(r.signed["result"])
        assert verify_signed(r.signed, HYPOTHESIS_KEYS.public_keys).valid


def test_a_sign_cancelled_while_waiting_is_not_numbered() -> None:
    ledger = CountingLedger()
    ledger.slow = 0.2
    log = TransparencyLog(ledger, make_keys())

    async def main() -> list[SignedResult]:
        first = asyncio.ensure_future(log.sign(request(0)))
        await asyncio.sleep(0.05)  # the first batch is appending
        waiting = [asyncio.ensure_future(log.sign(request(i))) for i in (1, 2, 3)]
        await asyncio.sleep(0)
        waiting[1].cancel()
        done = await asyncio.gather(first, waiting[0], waiting[2])
        assert waiting[1].cancelled()
        return list(done)

    try:
        signed = asyncio.run(main())
    finally:
        log.stop()
    assert [r.serial for r in signed] == [1, 2, 3]
    assert [r.signed["result"]["data"] for r in signed] == [[0], [1], [3]]
    assert ledger.size() == 3
