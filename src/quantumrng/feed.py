"""Feeding the Linux kernel's entropy pool from a QuantumRNG service: the pure parts.

``qrng feed`` (:mod:`quantumrng.cli.feed`) fetches ``n`` signed bytes and writes
them to ``/dev/random``, which mixes them into the kernel's pool and never
replaces what the kernel already holds (as Ubuntu's pollinate does): bytes
an attacker knows cannot lower the pool's entropy, they can only fail to
raise it. Crediting is different: ``RNDADDENTROPY`` tells the kernel the
bytes carry entropy, so a credit is given only for an answer that verified,
is fresh and is new, and conservatively (:func:`credit_bits`).

This module decides, with no I/O, whether an answer may be used
(:func:`check_answer`: signature under the pinned keys, exactly the bytes
asked for, made for this API key, fresh, a serial above the last one fed),
how much to credit, and the bytes of the ioctl's ``struct rand_pool_info``.

Freshness and the clock: a signed ``completion_time`` cannot be moved by
whoever replays an answer, so an answer more than ``max_age`` older than
this host's clock is refused as a possible replay (someone who saw an
answer, e.g. fetched it themselves, must not have it credited again later).
One more than ``max_age`` ahead of the clock is refused too: the host's
clock is wrong (typically at boot on a machine without a real-time clock),
and with a clock running behind, old answers would look fresh. Such a host
feeds nothing until its clock is set; the periodic timer feeds it then.
``--state`` adds a check that does not depend on the clock: the last
serial fed is kept, and no serial at or below it is used again.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from quantumrng.signed import PublicKey, hash_api_key, parse_rfc3339, verify_signed

__all__ = [
    "DEFAULT_BYTES",
    "DEFAULT_CREDIT_DIVISOR",
    "DEFAULT_DEVICE",
    "DEFAULT_MAX_AGE",
    "DEFAULT_TIMEOUT",
    "MAX_BYTES",
    "RNDADDENTROPY",
    "Accepted",
    "Refused",
    "check_answer",
    "check_freshness",
    "check_serial",
    "credit_bits",
    "ioc_write",
    "is_random_device",
    "parse_state",
    "rand_pool_info",
    "state_text",
]

DEFAULT_DEVICE = "/dev/random"
DEFAULT_BYTES = 64  # 512 bits: twice the kernel pool's 256-bit BLAKE2s state
MAX_BYTES = 4096
DEFAULT_CREDIT_DIVISOR = 4  # --credit alone credits a quarter of the bits received
DEFAULT_MAX_AGE = 300.0  # seconds an answer may be old (or ahead of this clock)
DEFAULT_TIMEOUT = 10.0  # seconds for a whole fetch: connect, TLS, request, answer

_RANDOM_MAJOR = 1  # drivers/char/mem.c: /dev/random is (1, 8), /dev/urandom (1, 9)
_RANDOM_MINORS = frozenset({8, 9})
_INT = struct.Struct("=i")  # a C int in native order, as <linux/random.h> declares it


def ioc_write(kind: int, number: int, size: int) -> int:
    """Linux ``_IOW(type, nr, size)`` (asm-generic/ioctl.h): write direction (1)
    in bits 30-31, the argument's size in bits 16-29, type and number below."""
    return (1 << 30) | (size << 16) | (kind << 8) | number


#: ``_IOW('R', 0x03, int[2])`` of <linux/random.h>: add to the pool and credit.
RNDADDENTROPY = ioc_write(ord("R"), 0x03, 2 * _INT.size)


def rand_pool_info(data: bytes | bytearray, entropy_bits: int) -> bytearray:
    """``struct rand_pool_info {int entropy_count; int buf_size; __u32 buf[];}``
    holding ``data``, to credit ``entropy_bits``: a ``bytearray`` the caller
    zeroes once the ioctl has it.

    ``buf_size`` is in bytes; the kernel reads exactly that many after the
    two ints. A credit above the bits given is refused (``ValueError``).
    """
    if not 0 <= entropy_bits <= 8 * len(data):
        raise ValueError("entropy_bits must be between 0 and the bits given")
    out = bytearray(2 * _INT.size + len(data))
    _INT.pack_into(out, 0, entropy_bits)
    _INT.pack_into(out, _INT.size, len(data))
    out[2 * _INT.size :] = data
    return out


def credit_bits(n_bytes: int, requested: int | None) -> int:
    """The bits to credit for ``n_bytes`` received: ``requested`` when given
    (never above the bits received: ``ValueError``), else a quarter of them.

    The service's bytes are DRBG output whose seed is quantum entropy, but the
    kernel cannot check that, nor that the network or the service was honest
    beyond the signature; crediting a fraction keeps a mistaken trust small.
    """
    received = 8 * n_bytes
    if requested is None:
        return received // DEFAULT_CREDIT_DIVISOR
    if not 0 <= requested <= received:
        raise ValueError(f"can credit at most the {received} bits received")
    return requested


def is_random_device(mode: int, rdev: int) -> bool:
    """True for a character device of the kernel's random driver (``os.stat``'s
    ``st_mode`` and ``st_rdev``): the only device ``RNDADDENTROPY`` means anything to."""
    return (
        stat.S_ISCHR(mode) and os.major(rdev) == _RANDOM_MAJOR and os.minor(rdev) in _RANDOM_MINORS
    )


@dataclass(frozen=True)
class Accepted:
    """An answer that may be fed: its serial and ``completion_time`` (text, as signed)."""

    serial: int
    completion_time: str


@dataclass(frozen=True)
class Refused:
    """An answer that must not be fed, and why (never the bytes)."""

    reason: str


def check_freshness(completed_at: float, now: float, max_age: float) -> str | None:
    """Why an answer completed at ``completed_at`` is not fresh at ``now``, or None."""
    age = now - completed_at
    if age > max_age:
        return (
            f"the answer is {age:.3g} s old, more than --max-age {max_age:g} s: "
            "an old answer replayed?"
        )
    if -age > max_age:
        return (
            f"the answer is dated {-age:.3g} s ahead of this host's clock, more than "
            f"--max-age {max_age:g} s: set the clock"
        )
    return None


def check_serial(serial: int, last: int | None) -> str | None:
    """Why ``serial`` may not be fed after ``last``, or None: serials only grow."""
    if last is not None and serial <= last:
        return f"serial {serial} is not above the last one fed ({last}): a replayed answer?"
    return None


def check_answer(
    data: bytes,
    signed: object,
    *,
    keys: Iterable[PublicKey],
    n: int,
    api_key: str | None,
    now: float,
    max_age: float,
    last_serial: int | None = None,
) -> Accepted | Refused:
    """Decide whether ``data``, answered with ``signed``, may be fed.

    Accepted only when the signature verifies under ``keys``
    (:func:`quantumrng.signed.verify_signed`); the signed result is
    ``/api/v2/bytes`` for exactly ``n`` bytes and its data decodes to
    ``data``; it was made for ``api_key`` (so another client's answer, whose
    bytes that client knows, is refused); and it is fresh and new
    (:func:`check_freshness`, :func:`check_serial`).
    """
    outcome = verify_signed(signed, keys)
    if not outcome.valid:
        return Refused(f"the signature does not verify: {outcome.reason}")
    assert isinstance(signed, Mapping)
    result = signed["result"]
    parameters = result["parameters"]
    if (
        result["method"] != "bytes"
        or not isinstance(parameters, Mapping)
        or parameters.get("n") != n
        or parameters.get("format") != "base64"
    ):
        return Refused(f"the signed result is not the {n} bytes asked for")
    try:
        signed_data = base64.b64decode(result["data"], validate=True)
    except (binascii.Error, TypeError, ValueError):
        return Refused("the signed data is not base64")
    if len(signed_data) != n or len(data) != n:
        return Refused(f"wrong length: {len(signed_data)} bytes signed, {n} asked for")
    if signed_data != data:
        return Refused("the bytes received are not the bytes signed")
    if result["hashed_api_key"] != hash_api_key(api_key):
        return Refused("the signed result was made for another API key")
    when = str(result["completion_time"])
    stale = check_freshness(parse_rfc3339(when), now, max_age)
    if stale is not None:
        return Refused(stale)
    serial = int(result["serial"])
    replayed = check_serial(serial, last_serial)
    if replayed is not None:
        return Refused(replayed)
    return Accepted(serial, when)


def parse_state(text: str) -> int:
    """The last serial fed, from a ``--state`` file's text; ``ValueError`` if it is not one."""
    try:
        document = json.loads(text)
    except ValueError:
        raise ValueError("not JSON") from None
    serial = document.get("serial") if isinstance(document, dict) else None
    if isinstance(serial, bool) or not isinstance(serial, int) or serial < 1:
        raise ValueError("no positive integer serial")
    return serial


def state_text(accepted: Accepted) -> str:
    """What a ``--state`` file holds after ``accepted`` was fed."""
    document = {"serial": accepted.serial, "completion_time": accepted.completion_time}
    return json.dumps(document) + "\n"
