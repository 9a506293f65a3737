"""QuantumRNG: quantum random numbers as a service.

The front end: ``token_bytes``, ``token_hex``, ``token_urlsafe``,
``randbelow``, ``choice`` and ``QuantumRandom`` draw from one engine whose
CTR_DRBG is seeded from the quantum entropy pool. The errors are those of
``quantumrng.errors``. Lower layers (``drbg``, ``pool``, ``sources``) are
hazardous parts for those who assemble their own pipeline.
"""

from quantumrng.errors import (
    EntropyUnavailable,
    HealthTestFailure,
    NotSeeded,
    QuantumRNGError,
    SourceError,
)
from quantumrng.library import (
    QuantumRandom,
    choice,
    randbelow,
    token_bytes,
    token_hex,
    token_urlsafe,
)

__all__ = [
    "EntropyUnavailable",
    "HealthTestFailure",
    "NotSeeded",
    "QuantumRNGError",
    "QuantumRandom",
    "SourceError",
    "__version__",
    "choice",
    "randbelow",
    "token_bytes",
    "token_hex",
    "token_urlsafe",
]

__version__ = "0.1.0"
