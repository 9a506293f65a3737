"""The transparency log: signs results in batches, appends them and beacon pulses,
publishes signed tree heads and answers RFC 9162 proofs.

Signing and appending are one step (:meth:`TransparencyLog.sign_batch`): the
store hands the counters to ``make``, which numbers, times and signs every
result from them, so a result is never signed with a serial that is not
stored (``transparency.store``). The leaf of a result is exactly the RFC 8785
bytes its signature covers. :meth:`TransparencyLog.sign` is the async front
end: requests that arrive while an append is in flight wait and go into the
next one together (group commit), in a thread of this log, so the event loop
never waits on the store.

Cost per result, which decides how fast signed answers are (issue 9's goal:
half the unsigned rate): the parts of a result that do not depend on its
numbering are encoded before the store's lock is taken (a provenance, shared
by every answer of a seed, once); the leaf is spliced from them in JCS's
member order; the stored document is written around the leaf itself, never
encoded again; a batch's answers are handed to each waiting event loop in one
wake-up.

Heads: one process of the deployment, the holder of the pool lease ``log``,
integrates new leaves (stores the hashes of the complete subtrees they make,
``merkle.completed_nodes``) and signs a tree head (RFC 9162 §4.10, see
``transparency.verify``) every ``head_seconds`` while the log grows; every
process answers heads and proofs from the store. Proofs read O(log n) stored
nodes, never the leaves.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from quantumrng import forksafe
from quantumrng.errors import NotFound, QuantumRNGError, Unavailable, ValidationError
from quantumrng.harvester import LeaseKeeper, holder_name
from quantumrng.pool.base import Pool
from quantumrng.signed import ALGORITHM, canonical, rfc3339
from quantumrng.signing import KeyRing
from quantumrng.transparency import merkle
from quantumrng.transparency.store import Counters, Entry, LedgerStore
from quantumrng.transparency.verify import tree_head_data

__all__ = ["MAX_BATCH", "SignRequest", "SignedResult", "TransparencyLog"]

log = logging.getLogger(__name__)

MAX_BATCH = 256  # results in one group-commit append
INTEGRATE_CHUNK = 4096  # leaves integrated per store round trip
PRUNE_SECONDS = 3600.0  # how often the head signer prunes expired results
COMMITTER_IDLE_SECONDS = 5.0  # the group-commit thread ends after this long without work
LEASE_NAME = "log"


@dataclass(frozen=True)
class SignRequest:
    """What a signed answer signs, before the log numbers and times it."""

    method: str  # the route's format name, e.g. "integers"
    parameters: Mapping[str, Any]  # JSON-safe (big integers as strings), "mode" included
    data: Any  # the answer's "data", as answered
    provenance: Mapping[str, Any]  # the answer's "source"
    hashed_api_key: str  # signed.hash_api_key(key), "" without a key


@dataclass(frozen=True)
class SignedResult:
    """A stored signed result: the ``signed`` object of the answer and where it is."""

    signed: dict[str, Any]  # {"result": {...}, "signature": b64, "algorithm": "Ed25519"}
    serial: int
    key_serial: int
    leaf_index: int


@dataclass(frozen=True)
class _Encoded:
    """A request with the RFC 8785 parts that do not depend on its numbering, encoded
    once (a retried append reuses them): the leaf's members between ``completion_time``
    and ``key_id``'s value, and between ``key_serial``'s and ``serial``'s values."""

    request: SignRequest
    up_to_key_id: bytes  # ',"data":…,"hashed_api_key":…,"key_id":'
    up_to_serial: bytes  # ',"method":…,"parameters":…,"provenance":…,"serial":'


#: orjson refuses these instead of writing them as JSON, so a cache key is plain JSON.
_KEY_OPTIONS = (
    orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)
_PROVENANCE_CACHE = 64  # distinct provenances kept encoded (one per seed in use)


class _Encoder:
    """Encodes requests, keeping the canonical bytes of recent provenances.

    Every answer drawn from one DRBG seed carries the same provenance, so its
    RFC 8785 bytes are kept, keyed by its plain JSON text (``orjson``, which
    tells ``false`` from ``0`` and ``1`` from ``1.0``, unlike ``==``): equal
    JSON text is an equal JSON value, hence equal canonical bytes.
    """

    def __init__(self) -> None:
        self._provenances: dict[bytes, bytes] = {}

    def _provenance(self, provenance: Mapping[str, Any]) -> bytes:
        value = dict(provenance)
        try:
            text = orjson.dumps(value, option=_KEY_OPTIONS)
        except orjson.JSONEncodeError:
            return canonical(value)
        encoded = self._provenances.get(text)
        if encoded is None:
            encoded = canonical(value)
            if len(self._provenances) >= _PROVENANCE_CACHE:
                self._provenances.clear()
            self._provenances[text] = encoded
        return encoded

    def __call__(self, request: SignRequest) -> _Encoded:
        """Encode ``request``'s parts; ``ValueError`` if JCS cannot (e.g. a big integer)."""
        return _Encoded(
            request,
            b"".join(
                (
                    b',"data":',
                    canonical(request.data),
                    b',"hashed_api_key":',
                    canonical(request.hashed_api_key),
                    b',"key_id":',
                )
            ),
            b"".join(
                (
                    b',"method":',
                    canonical(request.method),
                    b',"parameters":',
                    canonical(dict(request.parameters)),
                    b',"provenance":',
                    self._provenance(request.provenance),
                    b',"serial":',
                )
            ),
        )


def _leaf(part: _Encoded, time_member: bytes, serial: int, key_serial: int, kid: bytes) -> bytes:
    """RFC 8785 bytes of the result: members sorted by name (§3.2.3), values as JCS
    encodes them (integers below 2**53 in decimal), equal to ``canonical(result)``.
    ``time_member``: ``{"completion_time":<JCS string>``; ``kid``: the key id's JCS string."""
    return b"".join(
        (
            time_member,
            part.up_to_key_id,
            kid,
            b',"key_serial":',
            str(key_serial).encode(),
            part.up_to_serial,
            str(serial).encode(),
            b"}",
        )
    )


_SIGNATURE_MEMBER = b',"signature":"'
_AFTER_SIGNATURE = b'","algorithm":' + canonical(ALGORITHM) + b'},"log_index":'


def _stored_document(leaf: bytes, signature: str, leaf_index: int) -> bytes:
    """``{"signed": {"result", "signature", "algorithm"}, "log_index"}`` as stored, with
    the leaf itself as ``result`` (canonical JSON is JSON), so it is never encoded twice."""
    return b"".join(
        (
            b'{"signed":{"result":',
            leaf,
            _SIGNATURE_MEMBER,
            signature.encode("ascii"),
            _AFTER_SIGNATURE,
            str(leaf_index).encode(),
            b"}",
        )
    )


Outcome = SignedResult | BaseException


class _Waiter:
    """One ``sign`` call waiting for its batch, on its own event loop."""

    __slots__ = ("future", "loop", "request")

    def __init__(self, request: SignRequest, loop: asyncio.AbstractEventLoop) -> None:
        self.request = request
        self.loop = loop
        self.future: asyncio.Future[SignedResult] = loop.create_future()


def _settle(outcomes: list[tuple[_Waiter, Outcome]]) -> None:
    """Resolve waiters on their loop (a waiter cancelled meanwhile is left alone)."""
    for waiter, outcome in outcomes:
        if waiter.future.done():
            continue
        if isinstance(outcome, BaseException):
            waiter.future.set_exception(outcome)
        else:
            waiter.future.set_result(outcome)


def _deliver(outcomes: list[tuple[_Waiter, Outcome]]) -> None:
    """Hand the outcomes to their event loops: one wake-up per loop, not one per result."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Waiter, Outcome]]] = {}
    for pair in outcomes:
        by_loop.setdefault(pair[0].loop, []).append(pair)
    for loop, pairs in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_settle, pairs)


class _GroupCommit:
    """Appends waiting requests together, one batch at a time, from one thread.

    The thread starts with the first request and ends after
    ``COMMITTER_IDLE_SECONDS`` without one (or at :meth:`close`), so no loop
    or test leaks it. Callers await an ``asyncio`` future of their own loop,
    resolved there with the rest of their batch.
    """

    def __init__(
        self,
        encode: Callable[[SignRequest], _Encoded],
        commit: Callable[[Sequence[_Encoded]], list[SignedResult]],
    ) -> None:
        self._encode = encode
        self._commit = commit
        self._cond = threading.Condition()
        self._pending: collections.deque[_Waiter] = collections.deque()
        self._thread: threading.Thread | None = None
        self._closing = False
        self.batches = 0  # appends made (for metrics and tests)

    def submit(self, request: SignRequest) -> asyncio.Future[SignedResult]:
        """Queue ``request``; the future is of the running event loop."""
        waiter = _Waiter(request, asyncio.get_running_loop())
        with self._cond:
            self._pending.append(waiter)
            if self._thread is None:
                self._closing = False
                self._thread = threading.Thread(
                    target=self._run, name="qrng-log-commit", daemon=True
                )
                self._thread.start()
            else:
                self._cond.notify()
        return waiter.future

    def _take(self) -> list[_Waiter] | None:
        with self._cond:
            if not self._pending and not self._closing:
                self._cond.wait(COMMITTER_IDLE_SECONDS)
            if not self._pending:
                self._thread = None
                self._cond.notify_all()
                return None
            count = min(len(self._pending), MAX_BATCH)
            return [self._pending.popleft() for _ in range(count)]

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            outcomes: list[tuple[_Waiter, Outcome]] = []
            live: list[_Waiter] = []
            encoded: list[_Encoded] = []
            for w in batch:
                if w.future.cancelled():  # its caller is gone: nothing is signed for it
                    continue
                try:
                    encoded.append(self._encode(w.request))
                    live.append(w)
                except ValueError as exc:  # this request alone is refused
                    outcomes.append((w, exc))
            if live:
                try:
                    results = self._commit(encoded)
                except BaseException as exc:
                    outcomes.extend((w, exc) for w in live)
                else:
                    self.batches += 1
                    outcomes.extend(zip(live, results, strict=True))
            _deliver(outcomes)

    def close(self, timeout: float = 10.0) -> None:
        """Finish what is waiting and end the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._thread is None, timeout)

    def after_fork_in_child(self) -> None:
        self._cond = threading.Condition()
        self._pending = collections.deque()
        self._thread = None


def _document(head: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(head), separators=(",", ":")).encode()


class TransparencyLog:
    """See the module."""

    def __init__(
        self,
        store: LedgerStore,
        keys: KeyRing,
        *,
        pool: Pool | None = None,  # for the lease that elects one head signer
        node: str = "",
        head_seconds: float = 1.0,
        retention_seconds: float = 30 * 86400.0,
    ) -> None:
        self.store = store
        self.keys = keys
        self.pool = pool
        self.node = node
        self.head_seconds = head_seconds
        self.retention_seconds = retention_seconds
        self._encode = _Encoder()
        self._group = _GroupCommit(self._encode, self._append_encoded)
        self._head_lock = threading.Lock()  # one integration and signing at a time here
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._keeper: LeaseKeeper | None = None
        self._last_prune = 0.0
        forksafe.register(self)

    def __repr__(self) -> str:
        return f"TransparencyLog({self.store!r}, key={self.keys.current.key_id!r})"

    # -- signing -----------------------------------------------------------

    def sign_batch(self, requests: list[SignRequest]) -> list[SignedResult]:
        """Number, time, sign and append ``requests`` in one store append (blocking).

        Raises ``ValueError`` for a request JCS cannot encode (nothing stored),
        :class:`Unavailable` when the store fails (nothing stored).
        """
        return self._append_encoded([self._encode(r) for r in requests])

    def _append_encoded(self, parts: Sequence[_Encoded]) -> list[SignedResult]:
        if not parts:
            return []
        made: list[SignedResult] = []

        def make(counters: Counters) -> list[Entry]:
            made.clear()
            key = self.keys.current
            sign = key.sign
            kid = canonical(key.key_id)
            now = time.time()
            when = rfc3339(now)
            time_member = b'{"completion_time":' + canonical(when)
            next_key = dict(counters.key_serials)
            entries: list[Entry] = []
            for offset, part in enumerate(parts):
                request = part.request
                index = counters.next_leaf + offset
                serial = counters.next_serial + offset
                key_serial = next_key[request.hashed_api_key]
                next_key[request.hashed_api_key] = key_serial + 1
                leaf = _leaf(part, time_member, serial, key_serial, kid)
                signature = base64.b64encode(sign(leaf)).decode("ascii")
                signed = {
                    "result": {
                        "method": request.method,
                        "parameters": dict(request.parameters),
                        "data": request.data,
                        "provenance": dict(request.provenance),
                        "completion_time": when,
                        "serial": serial,
                        "key_serial": key_serial,
                        "hashed_api_key": request.hashed_api_key,
                        "key_id": key.key_id,
                    },
                    "signature": signature,
                    "algorithm": ALGORITHM,
                }
                entries.append(
                    Entry(
                        leaf_index=index,
                        kind="result",
                        created_at=now,
                        leaf=leaf,
                        document=_stored_document(leaf, signature, index),
                        serial=serial,
                        key_hash=request.hashed_api_key,
                        key_serial=key_serial,
                        leaf_hash=merkle.leaf_hash(leaf),
                    )
                )
                made.append(SignedResult(signed, serial, key_serial, index))
            return entries

        key_hashes = {p.request.hashed_api_key for p in parts}
        try:
            stored = self.store.append(key_hashes, make)
        except QuantumRNGError:
            raise
        except Exception as exc:
            log.exception("the transparency log could not append %d results", len(parts))
            raise Unavailable("the transparency log could not store the results") from exc
        if [e.serial for e in stored] != [r.serial for r in made]:
            raise Unavailable("the transparency log stored other results than it signed")
        return list(made)

    async def sign(self, request: SignRequest) -> SignedResult:
        """Sign one request; concurrent calls are appended together (group commit).

        Works from any event loop (in any thread); encoding and the append run in
        this log's commit thread. Raises as :meth:`sign_batch` does; a failed append fails
        every request of its batch.
        """
        return await self._group.submit(request)

    @property
    def batches(self) -> int:
        """Group-commit appends made so far by :meth:`sign`."""
        return self._group.batches

    def append_pulse(
        self, chain_index: int, pulse_index: int, time_ms: int, leaf: bytes, document: bytes
    ) -> Entry:
        """Append a beacon pulse (``leaf``: the bytes its signature covers; ``document``:
        its JSON). Raises ``store.PulseExists`` when that pulse or time is stored."""

        def make(counters: Counters) -> list[Entry]:
            return [
                Entry(
                    leaf_index=counters.next_leaf,
                    kind="pulse",
                    created_at=time.time(),
                    leaf=leaf,
                    document=document,
                    chain_index=chain_index,
                    pulse_index=pulse_index,
                    time_ms=time_ms,
                )
            ]

        return self.store.append((), make)[0]

    def result(self, serial: int) -> dict[str, Any] | None:
        """``{"signed": ..., "log_index": ...}`` of a stored result, None if unknown or pruned."""
        entry = self.store.result(serial)
        if entry is None or entry.document is None:
            return None
        document: dict[str, Any] = json.loads(entry.document)
        return document

    # -- heads -------------------------------------------------------------

    def _stored_head(self, tree_size: int | None = None) -> dict[str, Any] | None:
        raw = self.store.head(tree_size)
        if raw is None:
            return None
        head: dict[str, Any] = json.loads(raw)
        return head

    def _sign_head(self, tree_size: int, root: bytes, after_ms: int) -> dict[str, Any]:
        key = self.keys.current
        timestamp = max(int(time.time() * 1000), after_ms)
        signature = key.sign(tree_head_data(timestamp, tree_size, root))
        return {
            "tree_size": tree_size,
            "root_hash": root.hex(),
            "timestamp": timestamp,
            "key_id": key.key_id,
            "signature": base64.b64encode(signature).decode("ascii"),
        }

    def publish_head(self) -> dict[str, Any]:
        """Integrate the leaves appended since the latest head and sign a head for the
        new size (when it grew, or when there is none yet); return the latest head.

        Refuses (:class:`Unavailable`, logged) to sign over a store that lost
        entries or whose tree no longer gives the latest head's root: a head
        inconsistent with the published ones would only hide the damage.
        """
        with self._head_lock:
            latest = self._stored_head()
            done = 0 if latest is None else int(latest["tree_size"])
            size = self.store.size()
            if size < done:
                log.error("the ledger holds %d entries, its latest head %d", size, done)
                raise Unavailable(
                    f"the transparency log store holds {size} entries but its latest "
                    f"signed head covers {done}: entries were lost"
                )
            if latest is not None and size == done:
                return latest
            try:
                if latest is not None and done > 0:
                    self._check_root(done, str(latest["root_hash"]))
                for start in range(done, size, INTEGRATE_CHUNK):
                    end = min(start + INTEGRATE_CHUNK, size)
                    made = merkle.completed_nodes(start, end, self.store.nodes)
                    if made:
                        self.store.put_nodes(made)
                root = merkle.root_hash(size, self._nodes)
            except LookupError as exc:
                raise Unavailable(f"the transparency log is missing nodes: {exc}") from None
            after = 0 if latest is None else int(latest["timestamp"])
            self.store.put_head(size, _document(self._sign_head(size, root, after)))
            stored = self._stored_head(size)
            assert stored is not None
            return stored

    def _check_root(self, size: int, expected: str) -> None:
        if merkle.root_hash(size, self._nodes).hex() != expected:
            log.error("the stored tree of size %d does not give its signed root", size)
            raise Unavailable(
                f"the transparency log's stored tree of size {size} no longer matches "
                "its signed head; no new head is signed"
            )

    def head(self) -> dict[str, Any]:
        """The latest signed tree head:
        ``{"tree_size", "root_hash", "timestamp", "key_id", "signature"}``."""
        return self._stored_head() or self.publish_head()

    def _nodes(self, keys: Sequence[merkle.NodeKey]) -> list[bytes | None]:
        return self.store.nodes(keys)

    def _proof(self, ranges: Sequence[tuple[int, int]]) -> list[str]:
        try:
            return [h.hex() for h in merkle.proof_hashes(ranges, self._nodes)]
        except LookupError as exc:
            raise Unavailable(f"the transparency log is missing nodes: {exc}") from None

    def _head_size(self, tree_size: int | None) -> int:
        latest = self.head()["tree_size"]
        assert isinstance(latest, int)
        if tree_size is None:
            return latest
        if tree_size < 1:
            raise ValidationError("tree_size must be a positive integer")
        if tree_size > latest:
            raise NotFound(
                f"tree size {tree_size} has no signed tree head yet (the latest is {latest}); "
                f"retry after {self.head_seconds:g} s"
            )
        return tree_size

    def inclusion_proof(self, serial: int, tree_size: int | None = None) -> dict[str, Any]:
        """``{"leaf_index", "tree_size", "leaf_hash", "audit_path"}`` (hex)."""
        if serial < 1:
            raise ValidationError("serial must be a positive integer")
        size = self._head_size(tree_size)
        entry = self.store.result(serial)
        if entry is None:
            raise NotFound(f"no result has serial {serial}")
        if entry.leaf_index >= size:
            raise NotFound(
                f"serial {serial} is not in the signed tree of size {size} yet; "
                f"retry after {self.head_seconds:g} s"
            )
        return self.entry_proof(entry.leaf_index, size)

    def entry_proof(self, leaf_index: int, tree_size: int | None = None) -> dict[str, Any]:
        """The inclusion proof of the entry at ``leaf_index`` (a result or a pulse)."""
        size = self._head_size(tree_size)
        if not 0 <= leaf_index < size:
            raise NotFound(f"leaf {leaf_index} is not in the signed tree of size {size}")
        hashed = self.store.nodes([(0, leaf_index)])[0]
        if hashed is None:
            raise Unavailable(f"the transparency log is missing leaf {leaf_index}")
        return {
            "leaf_index": leaf_index,
            "tree_size": size,
            "leaf_hash": hashed.hex(),
            "audit_path": self._proof(merkle.inclusion_ranges(leaf_index, size)),
        }

    def consistency_proof(self, first: int, second: int) -> dict[str, Any]:
        """``{"first", "second", "proof"}`` (hex)."""
        if not 0 < first <= second:
            raise ValidationError("a consistency proof needs 0 < first <= second")
        self._head_size(second)
        return {
            "first": first,
            "second": second,
            "proof": self._proof(merkle.consistency_ranges(first, second)),
        }

    # -- the head thread -----------------------------------------------------

    def start(self) -> None:
        """Start integrating appended leaves and signing heads every ``head_seconds``."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        if self.pool is not None:
            seconds = max(10.0, 5 * self.head_seconds)
            self._keeper = LeaseKeeper(self.pool, LEASE_NAME, holder_name(self.node), seconds)
            self._keeper.start()
        self._thread = threading.Thread(target=self._run, name="qrng-log-heads", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop that thread (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None
        if self._keeper is not None:
            self._keeper.stop()
            self._keeper = None
        self._group.close()

    @property
    def leads(self) -> bool:
        """True while this process signs the deployment's heads."""
        if self.pool is None:
            return self._thread is not None
        return self._keeper is not None and self._keeper.lease is not None

    def _tick(self) -> None:
        if not self.leads:
            return
        self.publish_head()
        now = time.time()
        if now - self._last_prune >= PRUNE_SECONDS:
            self._last_prune = now
            dropped = self.store.prune(now - self.retention_seconds)
            if dropped:
                log.info("pruned %d results older than the retention", dropped)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except QuantumRNGError as exc:
                log.warning("transparency log heads: %s", exc.message)
            except Exception:  # a bug must not end the heads silently
                log.exception("transparency log heads: error")
            self._stop.wait(self.head_seconds)

    def after_fork_in_child(self) -> None:
        """A child signs with its own commit thread and starts its own head thread."""
        self._group.after_fork_in_child()
        self._head_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._keeper = None
