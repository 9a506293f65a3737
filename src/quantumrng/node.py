"""One QuantumRNG node: settings wired into source, pool, harvester and engine.

The CLI, the server and the library front end all build their engine here,
so there is one way from settings to output.
"""

from __future__ import annotations

import time
from typing import Any

from quantumrng.accounting import SourceLedger
from quantumrng.beacon import Publisher, load_beacon_key
from quantumrng.block import BLOCK_BYTES
from quantumrng.config import Settings, load_settings
from quantumrng.engine import Engine
from quantumrng.errors import UncreditedRaw
from quantumrng.harvester import Harvester
from quantumrng.health import HealthMonitor
from quantumrng.pool import TaggedPool, open_pool
from quantumrng.pool.base import Pool
from quantumrng.pool.integrity import load_or_create_key
from quantumrng.provenance import CREDITABLE_SOURCE_KINDS, Provenance
from quantumrng.rbg3 import XorMask
from quantumrng.signing import KeyRing
from quantumrng.sources import open_source
from quantumrng.sources.base import Source
from quantumrng.storage.redis import describe
from quantumrng.transparency import open_ledger
from quantumrng.transparency.log import TransparencyLog
from quantumrng.transparency.store import LedgerStore

__all__ = ["Node"]


class Node:
    """Source, pool, harvester and engine built from one ``Settings``.

    With ``harvest_on_demand`` the engine harvests synchronously when the
    pool has nothing to seed from (CLI and library use); a server instead
    runs the harvester's background thread.

    The pool is opened inside a :class:`~quantumrng.pool.TaggedPool` under
    the node key (``pool.open_pool``), so a block the store altered is never
    served.
    """

    def __init__(self, settings: Settings | None = None, *, harvest_on_demand: bool = True) -> None:
        self.settings = settings if settings is not None else load_settings()
        self.pool: Pool = open_pool(self.settings)
        self.ledger = SourceLedger(self.pool, self.settings.source)
        self._source: Source | None = None
        self._harvester: Harvester | None = None
        self._log_store: LedgerStore | None = None
        self._signing_keys: KeyRing | None = None
        self._log: TransparencyLog | None = None
        self._beacon: Publisher | None = None
        self.started_at = time.time()
        self.engine = Engine(
            self.pool,
            source=self.settings.source,
            reseed_bytes=self.settings.reseed_bytes,
            reseed_seconds=self.settings.reseed_seconds,
            refill=self._refill if harvest_on_demand else None,
            gate=self.ledger.check_usable,
        )

    @property
    def integrity_failures(self) -> int:
        """Pool blocks this process dropped because their integrity tag did not verify."""
        pool = self.pool
        return pool.integrity_failures if isinstance(pool, TaggedPool) else 0

    @property
    def source(self) -> Source:
        """The configured entropy source, built on first use."""
        if self._source is None:
            self._source = open_source(self.settings)
        return self._source

    @property
    def harvester(self) -> Harvester:
        """The harvester for the configured source, built on first use."""
        if self._harvester is None:
            s = self.settings
            self._harvester = Harvester(
                self.source,
                self.pool,
                low_water=s.pool_low_water,
                high_water=s.pool_high_water,
                backoff_max=s.harvest_backoff_max,
                # one leader per source among every process sharing the pool's store
                lease_seconds=s.harvest_lease_seconds,
                node=s.node,
                monitor=HealthMonitor(persistent_after=s.health_persistent_failures),
                assessment_samples=s.assessment_samples,
                require_operator_reset=s.require_operator_reset,
                witness_required=s.witness_required,
            )
        return self._harvester

    def _refill(self) -> None:
        self.harvester.fill(1)

    @property
    def credits_raw(self) -> bool:
        """True when the source can earn credit, so raw output may be served without
        ``allow_uncredited_raw``."""
        return self.settings.source in CREDITABLE_SOURCE_KINDS

    def check_raw(self) -> None:
        """Raise unless raw output may be served now.

        ``UncreditedRaw`` (409) for a zero-credit source (the simulator,
        ``os``) unless the operator set ``allow_uncredited_raw``;
        ``SourceFailed`` (503) while the source is in the persistent failure
        state (SP 800-90B §4.3).
        """
        if not self.credits_raw and not self.settings.allow_uncredited_raw:
            raise UncreditedRaw(
                f"raw output needs a source credited with full entropy; the "
                f"{self.settings.source} source earns no credit (use mode=drbg, or set "
                "allow_uncredited_raw for demos and tests)"
            )
        self.ledger.check_usable()

    def raw_bytes(self, n: int, mask: XorMask | None = None) -> tuple[bytes, list[Provenance], int]:
        """Raw output: conditioned pool bytes XOR the request's DRBG (RBG3(XOR),
        :mod:`quantumrng.rbg3`), under :meth:`check_raw`'s rules.

        ``mask`` is the request's :class:`~quantumrng.rbg3.XorMask` when
        one request reads several times; without it this call is the whole
        request. Without ``allow_uncredited_raw`` every block must be
        credited full entropy (512 bits); otherwise the bytes are dropped
        and ``UncreditedRaw`` raised.
        """
        self.check_raw()
        data, provenances, credited = self.engine.raw_bytes(n)
        blocks = -(-n // BLOCK_BYTES)
        if credited < blocks * BLOCK_BYTES * 8 and not self.settings.allow_uncredited_raw:
            raise UncreditedRaw(
                "the pool's blocks for this request are not credited with full entropy "
                "(the source's assessment credits less); use mode=drbg"
            )
        if mask is not None:
            return mask.apply(data), provenances, credited
        with XorMask() as once:
            return once.apply(data), provenances, credited

    def assessment_status(self) -> dict[str, Any]:
        """The source's assessment: from this process's harvester, else the stored record."""
        if self._harvester is not None:
            return self._harvester.assessment_status()
        if not self.credits_raw:
            return {"state": "not_credited", "samples_needed": 0}
        stored = self.ledger.assessment()
        if stored is None:
            return {"state": "pending", "samples_needed": self.settings.assessment_samples}
        return {"state": "assessed", **stored.to_json()}

    def pool_store(self) -> str:
        """Where the pool lives, for ``status``: the SQLite file, the Redis server (never
        its credentials), or ``memory``."""
        s = self.settings
        if s.pool == "redis":
            return describe(s)
        return str(s.pool_path) if s.pool == "sqlite" else "memory"

    def leader(self) -> dict[str, Any] | None:
        """Who leads the harvest of the configured source, from the pool's store, or None.

        ``holder`` is ``<node>:<pid>:<suffix>``; ``node`` its node part;
        ``expires_in`` the seconds left by the store's clock unless renewed.
        """
        info = self.pool.lease_holder(f"harvest:{self.settings.source}")
        if info is None:
            return None
        return {
            "holder": info.holder,
            "node": info.holder.rsplit(":", 2)[0],
            "token": info.token,
            "expires_in": round(info.expires_in, 3),
        }

    def status(self) -> dict[str, Any]:
        """Pool level and provenance, who leads the harvest, engine and harvester counters;
        no secret."""
        level = self.pool.level()
        failure = self.ledger.failure()
        data: dict[str, Any] = {
            "source": self.settings.source,
            "uptime_seconds": time.time() - self.started_at,
            "pool": {
                "backend": self.settings.pool,
                "store": self.pool_store(),
                "blocks": level.blocks,
                "credited_bits": level.credited_bits,
                "by_source": level.by_source,
                "low_water": self.settings.pool_low_water,
                "high_water": self.settings.pool_high_water,
                "integrity_failures": self.integrity_failures,
                "recent_harvests": [
                    {**prov.to_dict(), "blocks_left": left} for prov, left in self.pool.recent(5)
                ],
            },
            "leader": self.leader(),
            "engine": self.engine.stats(),
            "harvester": self._harvester.snapshot() if self._harvester is not None else None,
            "assessment": self.assessment_status(),
            "source_state": None if failure is None else failure.to_json(),
            "witness": {
                "share": self.settings.witness_share,
                "confidence": self.settings.witness_confidence,
                "required": self.settings.witness_required,
            },
        }
        return data

    @property
    def log_store(self) -> LedgerStore:
        """The deployment's store of signed results, log and pulses, opened on first use."""
        if self._log_store is None:
            self._log_store = open_ledger(self.settings)
        return self._log_store

    @property
    def signing_keys(self) -> KeyRing:
        """This node's Ed25519 signing keys, loaded (or made) on first use."""
        if self._signing_keys is None:
            self._signing_keys = KeyRing.load(self.settings)
        return self._signing_keys

    @property
    def log(self) -> TransparencyLog:
        """The transparency log over :attr:`log_store`, signing with :attr:`signing_keys`."""
        if self._log is None:
            s = self.settings
            self._log = TransparencyLog(
                self.log_store,
                self.signing_keys,
                pool=self.pool,
                node=s.node,
                head_seconds=s.log_head_seconds,
                retention_seconds=s.result_retention_days * 86400.0,
            )
        return self._log

    @property
    def beacon(self) -> Publisher:
        """The beacon publisher (not started) over :attr:`log`, signing with the beacon key."""
        if self._beacon is None:
            s = self.settings
            self._beacon = Publisher(
                self.log_store,
                self.log.append_pulse,
                self.pool,
                load_beacon_key(s),
                pool_key=load_or_create_key(s.pool_key_path),
                random_bytes=lambda n: self.engine.random_bytes(n, prediction_resistance=True),
                period=s.beacon_period,
                base_url=s.base_url,
                lease_seconds=s.harvest_lease_seconds,
                holder=s.node,
            )
        return self._beacon

    def close(self) -> None:
        """Stop the harvester, the beacon and the log, wipe the DRBG, close pool and ledger."""
        if self._harvester is not None:
            self._harvester.stop()
        if self._beacon is not None:
            self._beacon.stop()
        if self._log is not None:
            self._log.stop()
        self.engine.wipe()
        self.pool.close()
        if self._log_store is not None:
            self._log_store.close()
