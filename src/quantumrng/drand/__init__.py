"""A drand-compatible beacon: our own chain, in drand's schemes, verifiable by drand's
clients (low-level; the routes are ``server/drand.py``).

``chain`` is pure (rounds, messages, BLS through py-arkworks-bls12381, chain hash, JSON),
``key`` keeps the secret and the genesis time in ``<data_dir>/drand/``, ``rounds``
computes any emitted round from the key.
"""

from __future__ import annotations

from quantumrng.drand.chain import CHAINED, SCHEMES, UNCHAINED_G1, Beacon, ChainInfo
from quantumrng.drand.key import ChainSecret, load_chain_secret
from quantumrng.drand.rounds import DrandChain, RoundNotYet

__all__ = [
    "CHAINED",
    "SCHEMES",
    "UNCHAINED_G1",
    "Beacon",
    "ChainInfo",
    "ChainSecret",
    "DrandChain",
    "RoundNotYet",
    "load_chain_secret",
]
