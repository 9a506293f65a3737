"""open_source picks the source by settings.source; Qiskit stays unloaded until a harvest."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from quantumrng.config import Settings
from quantumrng.sources import (
    FileSource,
    IBMSource,
    OSSource,
    SimulatorSource,
    Source,
    open_source,
)


@pytest.mark.parametrize(
    ("kind", "cls"),
    [("simulator", SimulatorSource), ("ibm", IBMSource), ("os", OSSource), ("file", FileSource)],
)
def test_open_source_by_kind(kind: str, cls: type) -> None:
    source = open_source(Settings(source=kind))
    assert type(source) is cls
    assert source.kind == kind
    assert isinstance(source, Source)
    info = source.info()  # type: ignore[attr-defined]
    assert info["kind"] == kind
    json.dumps(info, default=str)


def test_default_is_the_simulator() -> None:
    assert isinstance(open_source(Settings()), SimulatorSource)


def test_import_and_construction_do_not_load_qiskit() -> None:
    code = (
        "import sys, quantumrng.sources as s\n"
        "from quantumrng.config import Settings\n"
        "for kind in ('simulator', 'ibm', 'os', 'file'):\n"
        "    s.open_source(Settings(source=kind)).info()\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "                ('qiskit', 'qiskit_aer', 'qiskit_ibm_runtime'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
