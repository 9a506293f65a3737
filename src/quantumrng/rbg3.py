"""Raw output as an RBG3(XOR) construction (SP 800-90C, RBG3(XOR)).

Every raw byte is full-entropy conditioned output of the quantum source
XORed with fresh output of a CTR_DRBG (AES-256, security strength 256)
instantiated for that one request (:class:`XorMask`):

    raw = conditioned pool bytes XOR DRBG_request(len)

- Full entropy stays: the pool bytes are credited full entropy (SP 800-90B
  §3.1.5.1.2) and the DRBG's output is independent of them, so their XOR
  has at least their min-entropy.
- Whoever saw the quantum bits cannot reconstruct the answer: the IBM job
  (its id is in the provenance) gives the raw measurements, and conditioning
  is deterministic, but the mask is seeded from 32 bytes of the kernel's
  entropy and a 16-byte nonce that never leave this process, and the DRBG
  is wiped when the request ends. A thief of the pool file learns nothing
  of answers either, for the same reason.

Where this differs from a validated RBG3(XOR): there the DRBG is seeded
from the same entropy source and reseeded by it; here it is instantiated
per request from the kernel's generator, because its job is to hide the
output from the quantum provider, and the full entropy comes from the
conditioned quantum bits alone.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from quantumrng import selftest
from quantumrng.drbg import MAX_BYTES_PER_REQUEST, CtrDrbg

__all__ = ["XorMask"]

ENTROPY_BYTES = 32  # the DRBG's security strength
NONCE_BYTES = 16


class XorMask:
    """A CTR_DRBG instantiated for one raw request; :meth:`apply` XORs its output on.

    Use it once per request and :meth:`close` it (or use ``with``): the
    DRBG's state is wiped then.
    """

    def __init__(self) -> None:
        selftest.power_on_selftest()  # SelfTestFailure: no DRBG, no raw output
        personalization = (
            f"quantumrng raw rbg3-xor|{os.getpid()}|{threading.get_ident()}|{time.time_ns()}"
        ).encode()
        self._drbg = CtrDrbg(os.urandom(ENTROPY_BYTES), os.urandom(NONCE_BYTES), personalization)
        self._lock = threading.Lock()

    def __enter__(self) -> XorMask:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def apply(self, data: bytes) -> bytes:
        """Return ``data`` XOR the next ``len(data)`` bytes of this request's DRBG."""
        mask = bytearray(len(data))
        view = memoryview(mask)
        try:
            with self._lock:
                for start in range(0, len(mask), MAX_BYTES_PER_REQUEST):
                    self._drbg.generate_into(view[start : start + MAX_BYTES_PER_REQUEST])
            out = np.frombuffer(data, dtype=np.uint8) ^ np.frombuffer(mask, dtype=np.uint8)
            return out.tobytes()
        finally:
            view[:] = bytes(len(mask))

    def close(self) -> None:
        """Wipe the DRBG; a later :meth:`apply` raises ``NotSeeded``."""
        self._drbg.wipe()
