"""Formats: pure functions from a byte source to what users ask for.

Low-level part. Every function takes ``read``, a :data:`RandomBytes` callable
returning exactly ``n`` random bytes (the DRBG, the raw pool, a test stream),
and turns them without bias into bits, integers, floats, gaussians, UUIDs,
strings and shuffles.

Beside each format stands its cost (``bits_cost``, ``integers_cost``, ...):
the bytes the function reads when no draw is rejected. It is the one source
of truth for what a request reads from the generator, which sizes limits,
quotas and the raw pool's first take; a rejected draw reads more (fewer than
twice as much is expected).

Integers use the simple discard method of SP 800-90A Rev. 1 Appendix A.5.1:
draw the fewest bits that cover the range and keep a draw only when it falls
inside, so fewer than two draws are expected and no value is favoured. Bits
are read most significant first, as ``numpy.packbits`` packs them. Up to 128
draws take whole bytes each (top bits masked); larger batches of ``k``-bit
draws cut one bit string into consecutive ``k``-bit fields.
"""

from __future__ import annotations

import math
import numbers
import operator
import random as _random
import string
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeVar

import numpy as np

from quantumrng.errors import InvalidRequest, QuantumRNGError, ValidationError

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = [
    "BytesRandom",
    "ALPHABETS",
    "RandomBytes",
    "bits",
    "bits_cost",
    "bits_string",
    "floats",
    "floats_cost",
    "gaussians",
    "gaussians_cost",
    "integers",
    "integers_cost",
    "permutation",
    "permutation_cost",
    "randbelow",
    "randint",
    "resolve_alphabet",
    "sample",
    "shuffle",
    "strings",
    "strings_cost",
    "uuid4s",
    "uuid4s_cost",
]

#: A byte source: ``read(n)`` returns exactly ``n`` random bytes.
RandomBytes = Callable[[int], bytes]

_T = TypeVar("_T")

_FLOAT_BITS: Final = 53  # IEEE 754 binary64 significand, bits
_FLOAT_ULP: Final = 2.0**-_FLOAT_BITS
_GAUSS_MAX_Z: Final = 8.58  # > sqrt(-2 ln 2**-53) = 8.5718, the largest |z| Box-Muller yields
_SMALL: Final = 128  # up to this many draws a Python loop beats numpy's per-call cost
_BATCH: Final = 1 << 16  # k-bit words unpacked at once; bounds scratch memory to 4 MiB
_U64: Final = 1 << 64
_I64_MIN: Final = -(1 << 63)
_I64_END: Final = 1 << 63
_BIG_INT_DIGITS: Final = 40  # ints longer than this are shown by bit length in messages

#: Named alphabets for :func:`strings`; ``printable`` is ASCII 0x21-0x7E (no whitespace).
ALPHABETS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "alnum": string.ascii_letters + string.digits,
        "alpha": string.ascii_letters,
        "lower": string.ascii_lowercase,
        "upper": string.ascii_uppercase,
        "digits": string.digits,
        "hex": "0123456789abcdef",
        "base64url": string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_",
        "base32": string.ascii_uppercase + "234567",  # RFC 4648 §6
        "printable": string.ascii_letters + string.digits + string.punctuation,
    }
)


# --- argument checks -------------------------------------------------------


def _show(value: int) -> str:
    text = str(value) if value.bit_length() <= 128 else ""
    if text and len(text) <= _BIG_INT_DIGITS:
        return text
    return f"a {value.bit_length()}-bit integer"


def _int(name: str, value: object, minimum: int | None = None) -> int:
    if isinstance(value, bool):
        raise InvalidRequest(f"{name} must be an integer, not a boolean")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidRequest(f"{name} must be an integer") from None
    if minimum is not None and number < minimum:
        raise ValidationError(f"{name} must be at least {minimum}, got {_show(number)}")
    return number


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidRequest(f"{name} must be a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValidationError(f"{name} must be finite")
    return number


def _bounds(lo: object, hi: object) -> tuple[int, int]:
    low, high = _int("lo", lo), _int("hi", hi)
    if low > high:
        raise ValidationError(f"lo ({_show(low)}) must not exceed hi ({_show(high)})")
    return low, high


def _alphabet(chars: object) -> str:
    if not isinstance(chars, str):
        raise InvalidRequest("alphabet must be a string")
    if not chars:
        raise ValidationError("alphabet must not be empty")
    if len(set(chars)) != len(chars):
        repeated = sorted({c for c in chars if chars.count(c) > 1})
        raise ValidationError(f"alphabet repeats characters: {''.join(repeated)!r}")
    return chars


# --- drawing bits ----------------------------------------------------------


def _read(read: RandomBytes, n: int) -> bytes:
    if n == 0:
        return b""
    data = read(n)
    if len(data) != n:
        raise QuantumRNGError(f"byte source returned {len(data)} bytes, expected {n}")
    return data


def _words(read: RandomBytes, m: int, k: int) -> npt.NDArray[np.uint64]:
    """Return ``m`` uniform ``k``-bit words (1 <= k <= 64) cut from one bit string."""
    if m > _BATCH:
        return np.concatenate([_words(read, min(_BATCH, m - i), k) for i in range(0, m, _BATCH)])
    width = 1 if k <= 8 else 2 if k <= 16 else 4 if k <= 32 else 8
    dtype = np.dtype(f">u{width}")
    if k == 8 * width:
        return np.frombuffer(_read(read, m * width), dtype=dtype).astype(np.uint64)
    nbits = m * k
    raw = np.frombuffer(_read(read, (nbits + 7) // 8), dtype=np.uint8)
    padded = np.zeros((m, 8 * width), dtype=np.uint8)
    padded[:, 8 * width - k :] = np.unpackbits(raw, count=nbits).reshape(m, k)
    return np.packbits(padded, axis=1).view(dtype).reshape(m).astype(np.uint64)


def _below_array(read: RandomBytes, highs: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Return ``r`` with each ``r[i]`` uniform on [0, highs[i]] (SP 800-90A A.5.1)."""
    masks = highs.copy()
    for shift in (1, 2, 4, 8, 16, 32):
        masks |= masks >> np.uint64(shift)
    out = np.zeros(highs.shape, dtype=np.uint64)
    pending = np.flatnonzero(highs)
    while pending.size:
        k = int(masks[pending].max()).bit_length()
        draws = _words(read, pending.size, k) & masks[pending]
        kept = draws <= highs[pending]
        out[pending[kept]] = draws[kept]
        pending = pending[~kept]
    return out


def _below_list(read: RandomBytes, highs: Sequence[int]) -> list[int]:
    """Return ``r`` with each ``r[i]`` uniform on [0, highs[i]], whole bytes per draw (A.5.1)."""
    out = [0] * len(highs)
    pending = [i for i, high in enumerate(highs) if high]
    while pending:
        sizes = [(highs[i].bit_length() + 7) // 8 for i in pending]
        data = _read(read, sum(sizes))
        pos = 0
        rejected: list[int] = []
        for i, size in zip(pending, sizes, strict=True):
            high = highs[i]
            value = int.from_bytes(data[pos : pos + size], "big") & ((1 << high.bit_length()) - 1)
            pos += size
            if value <= high:
                out[i] = value
            else:
                rejected.append(i)
        pending = rejected
    return out


def _below_same(read: RandomBytes, count: int, high: int) -> list[int]:
    """Return ``count`` ints uniform on [0, high]."""
    if count <= _SMALL or high >= _U64:
        return _below_list(read, [high] * count)
    return _below_array(read, np.full(count, high, dtype=np.uint64)).tolist()  # type: ignore[no-any-return]


def _fisher_yates(read: RandomBytes, n: int, k: int) -> list[int]:
    """Return the ``k`` offsets of Fisher-Yates over ``n`` slots: r[i] uniform on [0, n-1-i]."""
    if k <= _SMALL:
        return _below_list(read, range(n - 1, n - 1 - k, -1))
    highs = np.uint64(n - 1) - np.arange(k, dtype=np.uint64)
    return _below_array(read, highs).tolist()  # type: ignore[no-any-return]


def _words_cost(m: int, k: int) -> int:
    """Bytes :func:`_words` reads for ``m`` words of ``k`` bits (batches are whole bytes)."""
    return -(-m * k // 8)


def _below_list_cost(highs: Iterable[int]) -> int:
    return sum((high.bit_length() + 7) // 8 for high in highs if high)


def _below_same_cost(count: int, high: int) -> int:
    """Bytes :func:`_below_same` reads on its first pass."""
    if count == 0 or high == 0:
        return 0
    if count <= _SMALL or high >= _U64:
        return count * ((high.bit_length() + 7) // 8)
    return _words_cost(count, high.bit_length())


def _fisher_yates_cost(n: int, k: int) -> int:
    """Bytes :func:`_fisher_yates` reads on its first pass."""
    if k <= _SMALL:
        return _below_list_cost(range(n - 1, n - 1 - k, -1))
    return _words_cost(k, (n - 1).bit_length())


# --- public formats --------------------------------------------------------


def bits(read: RandomBytes, n: int) -> bytes:
    """Return a random n-bit string as ceil(n/8) big-endian bytes, unused top bits zero."""
    n = _int("n", n, 0)
    size = (n + 7) // 8
    data = bytearray(_read(read, size))
    if data:
        data[0] &= 0xFF >> (8 * size - n)
    return bytes(data)


def bits_cost(n: int) -> int:
    """Bytes :func:`bits` and :func:`bits_string` read."""
    return (_int("n", n, 0) + 7) // 8


def bits_string(read: RandomBytes, n: int) -> str:
    """Return a random string of exactly n '0' and '1' characters."""
    data = bits(read, n)
    return format(int.from_bytes(data, "big"), f"0{n}b") if n else ""


def randbelow(read: RandomBytes, n: int) -> int:
    """Return a random int in the range [0, n)."""
    n = _int("n", n, 1)
    return _below_list(read, [n - 1])[0]


def randint(read: RandomBytes, lo: int, hi: int) -> int:
    """Return a random int in the range [lo, hi], including both end points."""
    lo, hi = _bounds(lo, hi)
    return lo + randbelow(read, hi - lo + 1)


def integers(read: RandomBytes, count: int, lo: int, hi: int) -> list[int]:
    """Return count independent random ints in the range [lo, hi]."""
    count = _int("count", count, 0)
    lo, hi = _bounds(lo, hi)
    high = hi - lo
    if high == 0 or count == 0:
        return [lo] * count
    if count > _SMALL and lo >= _I64_MIN and hi < _I64_END:
        offsets = _below_array(read, np.full(count, high, dtype=np.uint64))
        # the uint64 sum wraps modulo 2**64; read as int64 it is exact for results in range
        return (offsets + np.uint64(lo % _U64)).view(np.int64).tolist()  # type: ignore[no-any-return]
    return [lo + r for r in _below_same(read, count, high)]


def integers_cost(count: int, lo: int, hi: int) -> int:
    """Bytes :func:`integers` reads when no draw is rejected."""
    count = _int("count", count, 0)
    lo, hi = _bounds(lo, hi)
    return _below_same_cost(count, hi - lo)


def floats(read: RandomBytes, count: int) -> list[float]:
    """Return count random floats k / 2**53 in the range [0.0, 1.0)."""
    count = _int("count", count, 0)
    return (_words(read, count, _FLOAT_BITS) * _FLOAT_ULP).tolist()  # type: ignore[no-any-return]


def floats_cost(count: int) -> int:
    """Bytes :func:`floats` reads: 53 bits a float."""
    return _words_cost(_int("count", count, 0), _FLOAT_BITS)


def gaussians(read: RandomBytes, count: int, mean: float = 0.0, stddev: float = 1.0) -> list[float]:
    """Return count normally distributed floats (Box-Muller on 53-bit uniforms)."""
    count = _int("count", count, 0)
    mu = _finite("mean", mean)
    sigma = _finite("stddev", stddev)
    if sigma < 0:
        raise ValidationError("stddev must not be negative")
    if not math.isfinite(abs(mu) + _GAUSS_MAX_Z * sigma):
        raise ValidationError("mean and stddev are too large: samples would overflow")
    pairs = (count + 1) // 2
    u = _words(read, 2 * pairs, _FLOAT_BITS).astype(np.float64)
    radius = np.sqrt(-2.0 * np.log((u[:pairs] + 1.0) * _FLOAT_ULP))  # (k+1)/2**53 > 0
    theta = (2.0 * math.pi * _FLOAT_ULP) * u[pairs:]
    z = np.empty(2 * pairs, dtype=np.float64)
    z[0::2] = radius * np.cos(theta)
    z[1::2] = radius * np.sin(theta)
    return (mu + sigma * z[:count]).tolist()  # type: ignore[no-any-return]


def gaussians_cost(count: int) -> int:
    """Bytes :func:`gaussians` reads: two 53-bit uniforms per pair of samples."""
    pairs = (_int("count", count, 0) + 1) // 2
    return _words_cost(2 * pairs, _FLOAT_BITS)


def uuid4s(read: RandomBytes, count: int) -> list[str]:
    """Return count random version 4 UUIDs in canonical form (RFC 9562 §5.4)."""
    count = _int("count", count, 0)
    raw = bytearray(_read(read, 16 * count))
    out: list[str] = []
    for i in range(0, len(raw), 16):
        raw[i + 6] = (raw[i + 6] & 0x0F) | 0x40  # version 4
        raw[i + 8] = (raw[i + 8] & 0x3F) | 0x80  # variant 10xx
        h = raw[i : i + 16].hex()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def uuid4s_cost(count: int) -> int:
    """Bytes :func:`uuid4s` reads: 16 a UUID."""
    return 16 * _int("count", count, 0)


def resolve_alphabet(name_or_chars: str) -> str:
    """Return the characters of a named alphabet, or check and return custom ones."""
    if isinstance(name_or_chars, str) and name_or_chars in ALPHABETS:
        return ALPHABETS[name_or_chars]
    try:
        return _alphabet(name_or_chars)
    except ValidationError as exc:
        names = ", ".join(ALPHABETS)
        raise ValidationError(f"{exc.message} (and it is not one of {names})") from None


def strings(read: RandomBytes, count: int, length: int, alphabet: str) -> list[str]:
    """Return count random strings of length characters drawn from alphabet."""
    count = _int("count", count, 0)
    length = _int("length", length, 0)
    chars = _alphabet(alphabet)
    n = count * length
    if n == 0:
        return [""] * count
    picks = _below_same(read, n, len(chars) - 1)
    flat = "".join([chars[i] for i in picks])
    return [flat[i : i + length] for i in range(0, n, length)]


def strings_cost(count: int, length: int, alphabet: str) -> int:
    """Bytes :func:`strings` reads when no draw is rejected."""
    count = _int("count", count, 0)
    length = _int("length", length, 0)
    return _below_same_cost(count * length, len(_alphabet(alphabet)) - 1)


def shuffle(read: RandomBytes, items: Iterable[_T]) -> list[_T]:
    """Return a new list of the items in random order (Fisher-Yates, TAOCP §3.4.2 P)."""
    out = list(items)
    n = len(out)
    if n < 2:
        return out
    for i, r in enumerate(_fisher_yates(read, n, n - 1)):
        j = i + r
        out[i], out[j] = out[j], out[i]
    return out


def permutation(read: RandomBytes, lo: int, hi: int) -> list[int]:
    """Return every int of the range [lo, hi] once, in random order."""
    lo, hi = _bounds(lo, hi)
    return shuffle(read, range(lo, hi + 1))


def permutation_cost(lo: int, hi: int) -> int:
    """Bytes :func:`permutation` reads when no draw is rejected."""
    lo, hi = _bounds(lo, hi)
    n = hi - lo + 1
    return 0 if n < 2 else _fisher_yates_cost(n, n - 1)


def sample(read: RandomBytes, population: Sequence[_T], k: int) -> list[_T]:
    """Return k distinct elements chosen from population (partial Fisher-Yates)."""
    if not isinstance(population, Sequence):
        raise InvalidRequest("population must be a sequence")
    k = _int("k", k, 0)
    n = len(population)
    if k > n:
        raise ValidationError(f"k ({_show(k)}) must not exceed the population size ({n})")
    moved: dict[int, int] = {}  # the few swapped slots of a virtual list(range(n))
    picks: list[int] = []
    for i, r in enumerate(_fisher_yates(read, n, k)):
        j = i + r
        picks.append(moved.get(j, j))
        moved[j] = moved.get(i, i)
    return [population[p] for p in picks]


class BytesRandom(_random.Random):
    """A ``random.Random`` whose every draw comes from ``_bytes``, which subclasses supply.

    ``getrandbits`` and ``randbytes`` read whole bytes, and ``random`` 53 bits,
    so ``randrange``, ``randint``, ``choice``, ``shuffle`` and ``sample`` take
    ``random.Random``'s ``_randbelow_with_getrandbits`` (chosen by its
    ``__init_subclass__``): exact rejection sampling for ranges of any size, no
    float rounding. Like ``random.SystemRandom`` it has no state: ``seed`` is
    ignored, with a ``RuntimeWarning`` (a caller who seeds expects a
    reproducible sequence), and ``getstate``/``setstate`` raise.
    """

    def __init__(self) -> None:
        # random.Random.__init__ would call seed(): nothing to seed, nothing to warn of
        self.gauss_next = None

    def _bytes(self, n: int) -> bytes:
        raise NotImplementedError

    def random(self) -> float:
        """Return a random float in [0.0, 1.0) with 53 random bits."""
        return (int.from_bytes(self._bytes(7), "big") >> 3) * 2.0**-53

    def getrandbits(self, k: int) -> int:
        """Return a non-negative int with ``k`` random bits."""
        if k < 0:
            raise ValueError("number of bits must be non-negative")
        numbytes = (k + 7) // 8
        return int.from_bytes(self._bytes(numbytes), "big") >> (numbytes * 8 - k)

    def randbytes(self, n: int) -> bytes:
        """Return ``n`` random bytes."""
        if n < 0:
            raise ValueError("number of bytes must be non-negative")
        return self._bytes(n)

    def seed(self, a: Any = None, version: int = 2) -> None:
        """Ignore the seed, with a warning: the byte source is seeded elsewhere."""
        warnings.warn(
            f"{type(self).__name__} cannot be seeded: its bytes come from the QuantumRNG "
            "engine or service and cannot be replayed, so the seed is ignored; use "
            "random.Random(seed) for a reproducible sequence",
            RuntimeWarning,
            stacklevel=2,
        )

    def getstate(self) -> NoReturn:
        """Raise: there is no state to save."""
        raise NotImplementedError(
            f"{type(self).__name__} has no state to save: its output cannot be replayed; "
            "use random.Random(seed) and its getstate() for a reproducible sequence"
        )

    def setstate(self, state: Any) -> NoReturn:
        """Raise: there is no state to restore."""
        raise NotImplementedError(
            f"{type(self).__name__} has no state to restore: its output cannot be replayed; "
            "use random.Random(seed) and its setstate() for a reproducible sequence"
        )
