"""Physics witnesses: their share of a job and what they cost the harvest rate.

Run: ``python -m bench.witness [--backend manila|ideal|simulator] [--shots N] [--rounds R]``
(as a module: ``bench/http.py`` would shadow the standard library).
Each hardware harvest runs Mermin and CHSH circuits beside the Hadamard circuit
(issue 11), every pub of the job at one shot count (settings and harvest as
parameter bindings). This prints the witness shots' share of the job, then the raw bits
harvested per second with witnesses against the same source without them,
alternating round by round in the same run (the figure is their ratio), and
the witness values. The IBM source runs locally on a fake backend (IBM's noise
model of FakeManilaV2, or an ideal Aer backend); on hardware the job's time is
queue plus shots, so the rate falls by about the share of shots.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from typing import Any

from quantumrng.config import Settings
from quantumrng.sources import IBMSource, SimulatorSource
from quantumrng.sources.base import Harvest, Source


class LocalService:
    """A runtime service that hands out one local backend."""

    def __init__(self, backend: Any) -> None:
        self.backend_obj = backend

    def least_busy(self, **_: Any) -> Any:
        return self.backend_obj


def make(backend: str, settings: Settings, *, witness: bool) -> Source:
    if backend == "simulator":
        return SimulatorSource(settings, witness=witness)
    if backend == "manila":
        from qiskit_ibm_runtime.fake_provider import FakeManilaV2

        device: Any = FakeManilaV2()
    else:
        from qiskit_aer import AerSimulator

        device = AerSimulator()
    return IBMSource(settings, service=LocalService(device), witness=witness)


def timed(source: Source) -> tuple[float, Harvest]:
    start = time.perf_counter()
    harvest = source.harvest()
    return time.perf_counter() - start, harvest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("manila", "ideal", "simulator"), default="manila")
    parser.add_argument("--qubits", type=int, default=5)
    parser.add_argument("--shots", type=int, default=4096)
    parser.add_argument("--share", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)
    settings = Settings(
        source="simulator" if args.backend == "simulator" else "ibm",
        qubits=args.qubits,
        shots=args.shots,
        witness_share=args.share,
    )
    sources = {w: make(args.backend, settings, witness=w) for w in (True, False)}
    for source in sources.values():
        source.harvest()  # warm up: imports, backend, transpilation
    seconds: dict[bool, list[float]] = {True: [], False: []}
    last: Harvest | None = None
    for _ in range(args.rounds):
        for witness, source in sources.items():
            elapsed, harvest = timed(source)
            seconds[witness].append(elapsed / harvest.nbits)
            if witness:
                last = harvest
    assert last is not None
    witness_shots = sum(w.shots for w in last.provenance.witness)
    share = witness_shots / (last.samples + witness_shots)
    rate = {w: 1 / statistics.median(s) for w, s in seconds.items()}
    print(f"{args.backend}: {args.qubits} qubits x {args.shots} shots, witness_share {args.share}")
    print(f"witness shots per job: {witness_shots} ({share:.1%} of the job's shots)")
    if last.provenance.witness:
        per = last.provenance.witness[0].shots_per_circuit
        settings = sum(len(w.settings) for w in last.provenance.witness)
        harvest = (
            f"one pub of {last.samples} shots"
            if args.backend == "simulator"
            else f"{last.samples // per} bindings of {per} shots = {last.samples} shots"
        )
        print(f"witness: {settings} settings x {per} shots; harvest: {harvest}")
    print(f"harvest without witnesses: {rate[False]:12,.0f} raw bits/s (baseline)")
    print(f"harvest with witnesses:    {rate[True]:12,.0f} raw bits/s")
    print(f"ratio with/without: {rate[True] / rate[False]:.2f}")
    for w in last.provenance.witness:
        print(
            f"  {w.kind:<6} {w.value:.3f} +- {w.stderr:.3f} (bound {w.bound:g}), "
            f"{w.shots} shots, p_classical {w.p_classical:.1e}, {w.status}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
