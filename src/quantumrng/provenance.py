"""Where entropy came from: the record that travels with every harvest and block."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from quantumrng.witness import Witness, harvest_status, summary

__all__ = [
    "CREDITABLE_SOURCE_KINDS",
    "LOCAL_SOURCE_KINDS",
    "QUANTUM_SOURCE_KINDS",
    "SOURCE_KINDS",
    "Provenance",
]

#: The kinds of entropy source, the one list settings, the CLI, the API
#: schema and the source factory (``quantumrng.sources``) are checked against.
SOURCE_KINDS = ("simulator", "ibm", "os", "file")
#: Kinds that measure quantum hardware; ``simulator`` carries no quantum entropy.
QUANTUM_SOURCE_KINDS = frozenset({"ibm"})
#: Kinds whose harvest takes moments, so a server harvests before it answers.
LOCAL_SOURCE_KINDS = frozenset({"simulator", "os", "file"})
#: Kinds whose bits can earn entropy credit, after an assessment: noise sources. The
#: simulator (a seeded PRNG) and ``os`` (the kernel's DRBG) never do.
CREDITABLE_SOURCE_KINDS = frozenset({"ibm", "file"})


@dataclass(frozen=True, slots=True)
class Provenance:
    """The origin of one harvest: which source, backend and job, and when."""

    source: str
    harvest_id: str
    harvested_at: float  # seconds since the Unix epoch
    backend: str | None = None
    job_id: str | None = None
    qubits: int = 0
    shots: int = 0
    #: The physics witnesses run in the harvest's job (``quantumrng.witness``); empty for
    #: sources that run none.
    witness: tuple[Witness, ...] = ()

    @property
    def quantum(self) -> bool:
        """True only for measurements of real quantum hardware."""
        return self.source in QUANTUM_SOURCE_KINDS

    @property
    def witness_status(self) -> str | None:
        """The harvest's witness verdict (``passed``, ``failed``, ``simulated``), or None."""
        return harvest_status(self.witness)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict of the fields.

        A harvest that ran witnesses adds ``witness`` (the verdict, see
        :func:`quantumrng.witness.summary`) and ``witnesses`` (every record, with
        the settings and nonce that open its commitment); one that ran none
        encodes as before, so sealed blocks and signed answers made over it verify.
        """
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del data["witness"]
        if self.witness:
            data["witness"] = summary(self.witness)
            data["witnesses"] = [w.to_dict() for w in self.witness]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        """Rebuild a provenance from :meth:`to_dict` output, ignoring unknown keys."""
        names = {f.name for f in dataclasses.fields(cls)} - {"witness"}
        fields: dict[str, Any] = {k: v for k, v in data.items() if k in names}
        items = data.get("witnesses", [])
        if not isinstance(items, list) or not all(isinstance(w, dict) for w in items):
            raise ValueError("witnesses must be a list of objects")
        if items:
            fields["witness"] = tuple(Witness.from_dict(w) for w in items)
        return cls(**fields)
