"""Entropy sources: each turns one run into a :class:`Harvest` of raw bits.

``simulator`` (the default; no entropy credit), ``ibm`` (IBM Quantum
hardware), ``os`` (the kernel's generator; no entropy credit) and ``file``
(a hardware RNG character device).
Qiskit is imported on a source's first harvest, never on import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from quantumrng.config import Settings
from quantumrng.errors import ConfigError
from quantumrng.sources.base import Harvest, Source
from quantumrng.sources.device import FileSource
from quantumrng.sources.ibm import IBMSource
from quantumrng.sources.osrandom import OSSource
from quantumrng.sources.simulator import SimulatorSource

__all__ = [
    "FACTORIES",
    "FileSource",
    "Harvest",
    "IBMSource",
    "OSSource",
    "SimulatorSource",
    "Source",
    "open_source",
]

#: The factory of each kind of :data:`quantumrng.provenance.SOURCE_KINDS`, and no other.
FACTORIES: Mapping[str, Callable[[Settings], Source]] = {
    "simulator": SimulatorSource,
    "ibm": IBMSource,
    "os": OSSource,
    "file": FileSource,
}


def open_source(settings: Settings) -> Source:
    """Return the source named by ``settings.source``, configured by ``settings``."""
    try:
        factory = FACTORIES[settings.source]
    except KeyError:
        raise ConfigError(f"unknown source {settings.source!r}") from None
    return factory(settings)
