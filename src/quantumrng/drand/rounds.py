"""The rounds of our drand chain, computed on demand from the key (no store, no thread).

A BLS signature is a deterministic function of the key and the message, so every
worker and node holding the key computes the same round, whenever it is asked:
nothing has to be published or stored for a round to exist, only its time has to
have come. Unchained rounds (quicknet's scheme) depend on the round number alone, so
any round costs one signature (an LRU cache keeps the recent ones). A chained round
signs its predecessor's signature, so round ``r`` needs the chain from genesis: each
process keeps a checkpoint every :data:`CHECKPOINT_ROUNDS` rounds in memory and in
the shared ``checkpoints`` file (``checkpoints.py``: checked on read, so it need not
be trusted) and computes forward from the nearest one, so a past round costs at most
that many signatures, after a restart too. A round is never signed
before its time: that is what timelock encryption to a future round relies on.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from quantumrng.drand.chain import (
    CHAINED,
    Beacon,
    ChainInfo,
    current_round,
    group_hash,
    message,
    next_round,
    public_key,
    round_time,
    sign,
    verify,
)
from quantumrng.drand.checkpoints import CheckpointFile
from quantumrng.drand.key import ChainSecret

__all__ = ["CHECKPOINT_ROUNDS", "RECENT_ROUNDS", "DrandChain", "RoundNotYet"]

CHECKPOINT_ROUNDS = 256  # a chained round kept every this many (96 bytes each)
RECENT_ROUNDS = 4096  # rounds each process keeps (about 200 bytes each)
BEACON_ID = "quantumrng"


class RoundNotYet(Exception):
    """Raised when a round's time has not come (drand answers 425 Too Early)."""


class DrandChain:
    """One drand chain: its info and any emitted round."""

    def __init__(
        self,
        scheme: str,
        period: int,
        secret: ChainSecret,
        *,
        beacon_id: str = BEACON_ID,
        clock: Callable[[], float] = time.time,
        checkpoint_dir: Path | None = None,
    ) -> None:
        """``checkpoint_dir``: where a chained chain keeps its checkpoint file (none: memory
        only)."""
        self.scheme = scheme
        self._secret = secret.secret
        self._clock = clock
        pk = public_key(scheme, secret.secret)
        self.info = ChainInfo(
            scheme,
            period,
            secret.genesis_time,
            pk,
            group_hash(pk, secret.genesis_time),
            beacon_id,
        )
        self.hash = self.info.hash
        self._lock = threading.Lock()
        self._checkpoints: list[int] = [0]  # sorted rounds with a kept signature
        self._kept: dict[int, bytes] = {0: self.info.group_hash}  # round 0: the genesis seed
        self._recent: OrderedDict[int, bytes] = OrderedDict()
        self._served: OrderedDict[int, Beacon] = OrderedDict()  # recent rounds, whole
        self._served_lock = threading.Lock()
        self._file: CheckpointFile | None = None
        if scheme == CHAINED and checkpoint_dir is not None:
            name = f"chained.{self.hash.hex()[:16]}"
            self._file = CheckpointFile(checkpoint_dir / name, self._valid_checkpoint)

    def close(self) -> None:
        """Close the checkpoint file, if any."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _valid_checkpoint(self, k: int, previous: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is ours over round ``k * N`` after ``previous``: as only
        the key signs, ``previous`` is then round ``k * N - 1``'s signature."""
        r = k * CHECKPOINT_ROUNDS
        return verify(
            self.scheme, self.info.public_key, message(self.scheme, r, previous), signature
        )

    def now(self) -> float:
        """The chain's clock (seconds since 1970)."""
        return self._clock()

    def current_round(self) -> int:
        """The newest emitted round (0 before genesis)."""
        return current_round(self._clock(), self.info.genesis_time, self.info.period)

    def next_round(self) -> tuple[int, int]:
        """The next round and its emission time."""
        return next_round(self._clock(), self.info.genesis_time, self.info.period)

    def round_time(self, round_: int) -> int:
        """When ``round_`` is emitted."""
        return round_time(round_, self.info.genesis_time, self.info.period)

    def cached(self, round_: int) -> Beacon | None:
        """Round ``round_`` if this process has it at hand (no signing: cheap enough for
        the event loop), else None."""
        with self._served_lock:
            found = self._served.get(round_)
            if found is not None:
                self._served.move_to_end(round_)
        return found

    def beacon(self, round_: int) -> Beacon:
        """Round ``round_`` (≥ 1); :class:`RoundNotYet` if its time has not come."""
        if round_ < 1:
            raise ValueError("rounds start at 1")
        if round_ > self.current_round():
            raise RoundNotYet(f"round {round_} is emitted at {self.round_time(round_)}")
        found = self.cached(round_)
        if found is not None:
            return found
        if self.scheme == CHAINED:
            with self._lock:
                previous = self._chained_signature(round_ - 1)
                signature = self._chained_signature(round_)
            made = Beacon(round_, signature, previous)
        else:
            made = Beacon(round_, sign(self.scheme, self._secret, message(self.scheme, round_)))
        with self._served_lock:
            self._served[round_] = made
            while len(self._served) > RECENT_ROUNDS:
                self._served.popitem(last=False)
        return made

    def _chained_signature(self, round_: int) -> bytes:
        """The signature of ``round_`` (0: the genesis seed), walking from the nearest
        kept one; called with the lock held."""
        found = self._recent.get(round_) or self._kept.get(round_)
        if found is not None:
            self._recent[round_] = found
            self._recent.move_to_end(round_)
            return found
        start = self._checkpoints[bisect.bisect_right(self._checkpoints, round_) - 1]
        start = self._from_file(start, round_)
        recent_start = max((r for r in self._recent if start < r < round_), default=None)
        if recent_start is not None:
            start = recent_start
        signature = self._recent.get(start) or self._kept[start]
        for r in range(start + 1, round_ + 1):
            previous = signature
            signature = sign(self.scheme, self._secret, message(self.scheme, r, previous))
            if r % CHECKPOINT_ROUNDS == 0 and r not in self._kept:
                self._keep(r, signature)
                if self._file is not None:
                    self._file.write(r // CHECKPOINT_ROUNDS, previous, signature)
        self._recent[round_] = signature
        while len(self._recent) > RECENT_ROUNDS:
            self._recent.popitem(last=False)
        return signature

    def _keep(self, round_: int, signature: bytes) -> None:
        self._kept[round_] = signature
        bisect.insort(self._checkpoints, round_)

    def _from_file(self, start: int, round_: int) -> int:
        """The newest round after ``start`` and at most ``round_`` that the checkpoint file
        holds (kept in memory from now on), else ``start``."""
        if self._file is None:
            return start
        for k in range(round_ // CHECKPOINT_ROUNDS, start // CHECKPOINT_ROUNDS, -1):
            record = self._file.read(k)
            if record is not None:
                r = k * CHECKPOINT_ROUNDS
                self._keep(r, record[1])
                return r
        return start
