"""RANDOM.ORG's Basic API methods (JSON-RPC Release 4, "Basic API"): one table of
method name → parameters, cost and producer, over our format functions.

Each :class:`Method` parses its ``params`` (RANDOM.ORG's names, ranges and
defaults; errors in RANDOM.ORG's codes, :mod:`.errors`), says how many bytes it
reads when no draw is rejected (what the daily quota is charged) and produces
``random.data`` from a byte source. The signed variants take the same parameters
plus ``userData``, ``ticketId`` and ``licenseData`` (:data:`SIGNED_EXTRA`).

``pregeneratedRandomization`` (``{"date": "YYYY-MM-DD"}`` or ``{"id": "..."}``)
answers from a CTR_DRBG (SP 800-90A) instantiated from a SHA-512 of the date or
id, so the same request gives the same values every time, on every node. Those
values are reproducible by anyone and NOT secret: they are for replays and
audits, never for keys or draws someone must not predict.
"""

from __future__ import annotations

import base64
import hashlib
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from quantumrng import formats
from quantumrng.drbg import CtrDrbg
from quantumrng.formats import RandomBytes
from quantumrng.server.randomorg.errors import INVALID_PARAMS, RpcError, out_of_range

__all__ = ["BASIC", "METHODS", "SIGNED_EXTRA", "Method", "Parsed", "pregenerated_reader"]

MAX_INT = 1_000_000_000  # |min|, |max| of integers (RANDOM.ORG's ±1e9)
MAX_VALUES = 10_000  # n of most methods; the total of a sequence request
MAX_SEQUENCES = 1_000
MAX_UUIDS = 1_000
MAX_BLOBS = 100
MAX_BLOB_BITS = 1 << 20  # one blob and all blobs of a request, in bits
MAX_STRING_LENGTH = 32
MAX_CHARACTERS = 128
MAX_DECIMAL_PLACES = 14
MAX_GAUSS = 1_000_000  # |mean|, |standardDeviation|
MAX_ID_CHARS = 64  # pregeneratedRandomization.id
BASES = (2, 8, 10, 16)
_BASE_FORMAT = {2: "b", 8: "o", 16: "x"}
_SAMPLE_RANGE = 1 << 62  # domains up to this are sampled without replacement exactly
_MISSING = object()
_PREGENERATED_NONCE = b"quantumrng randomorg pregenerated"
_DRBG_CHUNK = 1 << 16  # bytes per CTR_DRBG generate call (SP 800-90A max_number_of_bits)

#: Parameters only the signed methods take.
SIGNED_EXTRA = ("userData", "ticketId", "licenseData")

Parsed = dict[str, Any]


# -- parameters ------------------------------------------------------------------------


def _value(params: Mapping[str, Any], name: str, default: Any) -> Any:
    value = params.get(name, _MISSING)
    if value is _MISSING or (value is None and default is not _MISSING):
        if default is _MISSING:
            raise RpcError(INVALID_PARAMS)
        return default
    return value


def integer(
    params: Mapping[str, Any], name: str, low: int, high: int, default: Any = _MISSING
) -> int:
    """An integer parameter in [low, high] (a JSON number with no fraction)."""
    return _int_in(_value(params, name, default), name, low, high)


def _int_in(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise RpcError(INVALID_PARAMS)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    try:
        number = operator.index(value)
    except TypeError:
        raise RpcError(INVALID_PARAMS) from None
    if not low <= number <= high:
        raise out_of_range(name, low, high)
    return number


def number(params: Mapping[str, Any], name: str, low: float, high: float) -> float:
    """A finite number parameter in [low, high]."""
    value = _value(params, name, _MISSING)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RpcError(INVALID_PARAMS)
    if not low <= value <= high:
        raise out_of_range(name, int(low), int(high))
    return float(value)


def boolean(params: Mapping[str, Any], name: str, default: bool) -> bool:
    """A boolean parameter."""
    value = _value(params, name, default)
    if not isinstance(value, bool):
        raise RpcError(INVALID_PARAMS)
    return value


def _base(value: Any) -> int:
    base = _int_in(value, "base", -(2**31), 2**31)
    if base not in BASES:
        raise RpcError(203, "base", "2, 8, 10 or 16")
    return base


def pregenerated(params: Mapping[str, Any]) -> dict[str, str] | None:
    """``pregeneratedRandomization``: None, ``{"date": an ISO date, not in the future}``
    or ``{"id": 1 to 64 characters}``."""
    value = params.get("pregeneratedRandomization")
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) != 1:
        raise RpcError(INVALID_PARAMS)
    ((kind, text),) = value.items()
    if kind == "date" and isinstance(text, str):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise RpcError(INVALID_PARAMS) from None
        if len(text) != 10:
            raise RpcError(INVALID_PARAMS)
        if day > datetime.now(UTC).date():
            raise RpcError(305, text)
        return {"date": text}
    if kind == "id" and isinstance(text, str):
        if not 1 <= len(text) <= MAX_ID_CHARS:
            raise out_of_range("pregeneratedRandomization.id", 1, MAX_ID_CHARS)
        return {"id": text}
    raise RpcError(INVALID_PARAMS)


def pregenerated_reader(seed: Mapping[str, str]) -> RandomBytes:
    """A byte source reproducible from ``seed`` (a date or an id): CTR_DRBG (AES-256, df)
    instantiated from SHA-512 of it. Not secret: anyone with the date or id gets the bytes."""
    ((kind, text),) = seed.items()
    entropy = hashlib.sha512(f"{kind}\0{text}".encode()).digest()
    drbg = CtrDrbg(entropy, _PREGENERATED_NONCE)

    def read(n: int) -> bytes:
        return b"".join(drbg.generate(min(_DRBG_CHUNK, n - i)) for i in range(0, n, _DRBG_CHUNK))

    return read


# -- producers -------------------------------------------------------------------------


def _distinct(read: RandomBytes, count: int, low: int, high: int) -> list[int]:
    """``count`` distinct integers of [low, high] (partial Fisher-Yates)."""
    return formats.sample(read, range(low, high + 1), count)


def _shown(values: list[int], base: int) -> list[int] | list[str]:
    if base == 10:
        return values
    spec = _BASE_FORMAT[base]
    return [format(v, spec) for v in values]


def _draw_integers(
    read: RandomBytes, n: int, low: int, high: int, replacement: bool, base: int
) -> list[Any]:
    values = formats.integers(read, n, low, high) if replacement else _distinct(read, n, low, high)
    return _shown(values, base)


def _check_domain(n: int, low: int, high: int, replacement: bool) -> None:
    if high < low:
        raise RpcError(300, "max", "min")
    if not replacement and n > high - low + 1:
        raise RpcError(301, n, high - low + 1)


def _integers_cost(n: int, low: int, high: int) -> int:
    return formats.integers_cost(n, low, high)


@dataclass(frozen=True)
class Method:
    """One Basic method: its parameter names, parser, cost in bytes and producer."""

    name: str
    names: frozenset[str]  # every parameter it takes besides apiKey
    parse: Callable[[Mapping[str, Any]], Parsed]
    cost: Callable[[Parsed], int]
    produce: Callable[[RandomBytes, Parsed], Any]


def _parse_integers(p: Mapping[str, Any]) -> Parsed:
    n = integer(p, "n", 1, MAX_VALUES)
    low = integer(p, "min", -MAX_INT, MAX_INT)
    high = integer(p, "max", -MAX_INT, MAX_INT)
    replacement = boolean(p, "replacement", True)
    base = _base(_value(p, "base", 10))
    _check_domain(n, low, high, replacement)
    return {"n": n, "min": low, "max": high, "replacement": replacement, "base": base}


def _per_sequence(
    p: Mapping[str, Any], name: str, n: int, one: Callable[[Any], Any], default: Any
) -> list[Any]:
    value = _value(p, name, default)
    if isinstance(value, list):
        if len(value) != n:
            raise RpcError(304, name, n)
        return [one(v) for v in value]
    return [one(value)] * n


def _parse_sequences(p: Mapping[str, Any]) -> Parsed:
    n = integer(p, "n", 1, MAX_SEQUENCES)

    def length(v: Any) -> int:
        return _int_in(v, "length", 1, MAX_VALUES)

    def bound(name: str) -> Callable[[Any], int]:
        return lambda v: _int_in(v, name, -MAX_INT, MAX_INT)

    def flag(v: Any) -> bool:
        if not isinstance(v, bool):
            raise RpcError(INVALID_PARAMS)
        return v

    lengths = _per_sequence(p, "length", n, length, _MISSING)
    lows = _per_sequence(p, "min", n, bound("min"), _MISSING)
    highs = _per_sequence(p, "max", n, bound("max"), _MISSING)
    replacements = _per_sequence(p, "replacement", n, flag, True)
    bases = _per_sequence(p, "base", n, _base, 10)
    total = sum(lengths)
    if total > MAX_VALUES:
        raise RpcError(302, MAX_VALUES, total)
    for k, lo, hi, r in zip(lengths, lows, highs, replacements, strict=True):
        _check_domain(k, lo, hi, r)
    multiform = any(
        isinstance(p.get(name), list) for name in ("length", "min", "max", "replacement", "base")
    )
    parsed: Parsed = {
        "n": n,
        "sequences": list(zip(lengths, lows, highs, replacements, bases, strict=True)),
    }
    parsed["echo"] = {
        "n": n,
        "length": lengths if multiform else lengths[0],
        "min": lows if multiform else lows[0],
        "max": highs if multiform else highs[0],
        "replacement": replacements if multiform else replacements[0],
        "base": bases if multiform else bases[0],
    }
    return parsed


def _produce_sequences(read: RandomBytes, a: Parsed) -> list[list[Any]]:
    return [_draw_integers(read, k, lo, hi, r, b) for k, lo, hi, r, b in a["sequences"]]


def _parse_decimals(p: Mapping[str, Any]) -> Parsed:
    n = integer(p, "n", 1, MAX_VALUES)
    places = integer(p, "decimalPlaces", 1, MAX_DECIMAL_PLACES)
    replacement = boolean(p, "replacement", True)
    if not replacement and n > 10**places:
        raise RpcError(301, n, 10**places)
    return {"n": n, "decimalPlaces": places, "replacement": replacement}


def _produce_decimals(read: RandomBytes, a: Parsed) -> list[float]:
    scale = 10 ** a["decimalPlaces"]
    ks = _draw_integers(read, a["n"], 0, scale - 1, a["replacement"], 10)
    return [round(k / scale, a["decimalPlaces"]) for k in ks]


def _parse_gaussians(p: Mapping[str, Any]) -> Parsed:
    n = integer(p, "n", 1, MAX_VALUES)
    mean = number(p, "mean", -MAX_GAUSS, MAX_GAUSS)
    stddev = number(p, "standardDeviation", -MAX_GAUSS, MAX_GAUSS)
    digits = integer(p, "significantDigits", 2, MAX_DECIMAL_PLACES)
    return {"n": n, "mean": mean, "standardDeviation": stddev, "significantDigits": digits}


def _produce_gaussians(read: RandomBytes, a: Parsed) -> list[float]:
    values = formats.gaussians(read, a["n"], a["mean"], abs(a["standardDeviation"]))
    return [float(f"{v:.{a['significantDigits']}g}") for v in values]


def _parse_strings(p: Mapping[str, Any]) -> Parsed:
    n = integer(p, "n", 1, MAX_VALUES)
    length = integer(p, "length", 1, MAX_STRING_LENGTH)
    characters = _value(p, "characters", _MISSING)
    if not isinstance(characters, str):
        raise RpcError(INVALID_PARAMS)
    if not 1 <= len(characters) <= MAX_CHARACTERS:
        raise out_of_range("characters", 1, MAX_CHARACTERS)
    if len(set(characters)) != len(characters):
        raise RpcError(204, "characters")
    replacement = boolean(p, "replacement", True)
    if not replacement and n > len(characters) ** length:
        raise RpcError(301, n, len(characters) ** length)
    return {"n": n, "length": length, "characters": characters, "replacement": replacement}


def _spell(index: int, characters: str, length: int) -> str:
    out = []
    for _ in range(length):
        index, digit = divmod(index, len(characters))
        out.append(characters[digit])
    return "".join(out)


def _produce_strings(read: RandomBytes, a: Parsed) -> list[str]:
    n, length, chars = a["n"], a["length"], a["characters"]
    if a["replacement"]:
        return formats.strings(read, n, length, chars)
    domain = len(chars) ** length
    if domain <= _SAMPLE_RANGE:
        return [_spell(i, chars, length) for i in _distinct(read, n, 0, domain - 1)]
    seen: dict[str, None] = {}
    for _ in range(2 * n):  # a repeat among >= 2**62 strings is all but impossible
        seen.update(dict.fromkeys(formats.strings(read, n - len(seen), length, chars)))
        if len(seen) == n:
            break
    return list(seen)[:n]


def _parse_uuids(p: Mapping[str, Any]) -> Parsed:
    return {"n": integer(p, "n", 1, MAX_UUIDS)}


def _parse_blobs(p: Mapping[str, Any]) -> Parsed:
    n = integer(p, "n", 1, MAX_BLOBS)
    size = integer(p, "size", 1, MAX_BLOB_BITS)
    if size % 8:
        raise RpcError(303, "size", 8)
    if n * size > MAX_BLOB_BITS:
        raise RpcError(302, MAX_BLOB_BITS, n * size)
    form = _value(p, "format", "base64")
    if form not in ("base64", "hex"):
        raise RpcError(203, "format", "base64 or hex")
    return {"n": n, "size": size, "format": form}


def _produce_blobs(read: RandomBytes, a: Parsed) -> list[str]:
    blobs = [formats.bits(read, a["size"]) for _ in range(a["n"])]
    if a["format"] == "hex":
        return [b.hex() for b in blobs]
    return [base64.b64encode(b).decode("ascii") for b in blobs]


def _method(
    name: str,
    names: tuple[str, ...],
    parse: Callable[[Mapping[str, Any]], Parsed],
    cost: Callable[[Parsed], int],
    produce: Callable[[RandomBytes, Parsed], Any],
) -> Method:
    return Method(name, frozenset({*names, "pregeneratedRandomization"}), parse, cost, produce)


#: The Basic methods by name (their signed variants: "generateSigned" + the rest).
BASIC: dict[str, Method] = {
    m.name: m
    for m in (
        _method(
            "generateIntegers",
            ("n", "min", "max", "replacement", "base"),
            _parse_integers,
            lambda a: _integers_cost(a["n"], a["min"], a["max"]),
            lambda r, a: _draw_integers(r, a["n"], a["min"], a["max"], a["replacement"], a["base"]),
        ),
        _method(
            "generateIntegerSequences",
            ("n", "length", "min", "max", "replacement", "base"),
            _parse_sequences,
            lambda a: sum(_integers_cost(k, lo, hi) for k, lo, hi, _, _ in a["sequences"]),
            _produce_sequences,
        ),
        _method(
            "generateDecimalFractions",
            ("n", "decimalPlaces", "replacement"),
            _parse_decimals,
            lambda a: _integers_cost(a["n"], 0, 10 ** a["decimalPlaces"] - 1),
            _produce_decimals,
        ),
        _method(
            "generateGaussians",
            ("n", "mean", "standardDeviation", "significantDigits"),
            _parse_gaussians,
            lambda a: formats.gaussians_cost(a["n"]),
            _produce_gaussians,
        ),
        _method(
            "generateStrings",
            ("n", "length", "characters", "replacement"),
            _parse_strings,
            lambda a: formats.strings_cost(a["n"], a["length"], a["characters"]),
            _produce_strings,
        ),
        _method(
            "generateUUIDs",
            ("n",),
            _parse_uuids,
            lambda a: formats.uuid4s_cost(a["n"]),
            lambda r, a: formats.uuid4s(r, a["n"]),
        ),
        _method(
            "generateBlobs",
            ("n", "size", "format"),
            _parse_blobs,
            lambda a: a["n"] * a["size"] // 8,
            _produce_blobs,
        ),
    )
}

#: Every randomness method, Basic and signed, by its RPC name: (method, signed).
METHODS: dict[str, tuple[Method, bool]] = {
    **{name: (m, False) for name, m in BASIC.items()},
    **{name.replace("generate", "generateSigned", 1): (m, True) for name, m in BASIC.items()},
}


def parse(method: Method, signed: bool, params: Mapping[str, Any]) -> tuple[Parsed, dict[str, Any]]:
    """Check ``params`` against ``method``; return its arguments and the parameters a
    signed ``random`` object echoes (RANDOM.ORG's names, defaults filled in)."""
    allowed = method.names | ({"apiKey", *SIGNED_EXTRA} if signed else {"apiKey"})
    if not set(params) <= allowed:
        raise RpcError(INVALID_PARAMS)
    args = method.parse(params)
    echo = dict(args.pop("echo", args))
    echo["pregeneratedRandomization"] = pregenerated(params)
    args["pregeneratedRandomization"] = echo["pregeneratedRandomization"]
    return args, echo
