"""Beacon 2.0 pulses (draft NISTIR 8213): the format, its signature and the chain checks.

Pure: the :class:`Pulse` and its JSON as NIST serves it, :func:`serialize`
(the bytes the signature covers), :func:`sign`, :func:`verify_pulse` and
:func:`verify_chain`, which ``qrng beacon verify-chain`` and the server share.

The serialization is the one NIST's live beacon signs (draft NISTIR 8213
§4.3, as implemented): strings as a 4-byte big-endian length and their UTF-8
bytes; hashes and other byte strings as a 4-byte length and the bytes (hex
decoded); ``cipherSuite``, ``period`` and the status codes as 4-byte and
``chainIndex``/``pulseIndex`` as 8-byte big-endian integers; in the order
uri, version, cipherSuite, period, certificateId, chainIndex, pulseIndex,
timeStamp, localRandomValue, external (sourceId, statusCode, value), the five
listValues, precommitmentValue, statusCode. cipherSuite 0: the signature is
RSA PKCS#1 v1.5 over SHA-512 of those bytes, ``outputValue`` =
SHA-512(bytes ‖ signature), ``certificateId`` = SHA-512 of the certificate's
DER. A test reproduces NIST's own pulses and signatures with it.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = [
    "CIPHER_SUITE",
    "HASH_BYTES",
    "LIST_TYPES",
    "STATUS_NEW_CHAIN",
    "STATUS_OK",
    "VERSION",
    "ZERO",
    "External",
    "Failure",
    "ListValue",
    "Pulse",
    "certificate_id",
    "expected_list_index",
    "format_time",
    "load_certificates",
    "output_value",
    "parse_time",
    "pulse_uri",
    "serialize",
    "sign",
    "verify_chain",
    "verify_pulse",
]


VERSION = "2.0"  # as NIST's beacon serves it now
CIPHER_SUITE = 0  # SHA-512, RSA PKCS#1 v1.5 over SHA-512
HASH_BYTES = 64
ZERO = bytes(HASH_BYTES)
LIST_TYPES = ("previous", "hour", "day", "month", "year")
STATUS_OK = 0
STATUS_NEW_CHAIN = 1  # the first pulse of a chain: its previous value is all zeros


# --- format --------------------------------------------------------------------------


def format_time(time_ms: int) -> str:
    """A pulse ``timeStamp``: ISO 8601 UTC with milliseconds, e.g. 2026-08-31T19:04:00.000Z."""
    moment = datetime.fromtimestamp(time_ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{time_ms % 1000:03d}Z"


def parse_time(text: str) -> int:
    """Milliseconds since the epoch of a pulse ``timeStamp``; ``ValueError`` if malformed."""
    if not text.endswith("Z"):
        raise ValueError("a timeStamp ends with Z (UTC)")
    moment = datetime.strptime(text[:-1], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
    return calendar.timegm(moment.timetuple()) * 1000 + moment.microsecond // 1000


@dataclass(frozen=True, slots=True)
class External:
    """The external value of a pulse (none here: zeros, status 0)."""

    source_id: bytes = ZERO
    status_code: int = 0
    value: bytes = ZERO


@dataclass(frozen=True, slots=True)
class ListValue:
    """One skiplist entry: the outputValue of the pulse at ``uri``."""

    type: str
    uri: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Pulse:
    """One Beacon 2.0 pulse, its fields in the format's order."""

    uri: str
    version: str
    cipher_suite: int
    period: int  # milliseconds
    certificate_id: bytes
    chain_index: int
    pulse_index: int
    time_stamp: str
    local_random_value: bytes
    external: External
    list_values: tuple[ListValue, ...]
    precommitment_value: bytes
    status_code: int
    signature_value: bytes = b""
    output_value: bytes = b""

    @property
    def time_ms(self) -> int:
        """``timeStamp`` in milliseconds since the epoch."""
        return parse_time(self.time_stamp)

    def list_value(self, kind: str) -> ListValue | None:
        """The list value of type ``kind``, or None."""
        return next((v for v in self.list_values if v.type == kind), None)

    def to_json(self) -> dict[str, Any]:
        """The pulse as NIST serves it (hex in upper case), without the ``pulse`` wrapper."""
        return {
            "uri": self.uri,
            "version": self.version,
            "cipherSuite": self.cipher_suite,
            "period": self.period,
            "certificateId": self.certificate_id.hex(),
            "chainIndex": self.chain_index,
            "pulseIndex": self.pulse_index,
            "timeStamp": self.time_stamp,
            "localRandomValue": self.local_random_value.hex().upper(),
            "external": {
                "sourceId": self.external.source_id.hex().upper(),
                "statusCode": self.external.status_code,
                "value": self.external.value.hex().upper(),
            },
            "listValues": [
                {"uri": v.uri, "type": v.type, "value": v.value.hex().upper()}
                for v in self.list_values
            ],
            "precommitmentValue": self.precommitment_value.hex().upper(),
            "statusCode": self.status_code,
            "signatureValue": self.signature_value.hex().upper(),
            "outputValue": self.output_value.hex().upper(),
        }

    def document(self) -> bytes:
        """``{"pulse": {...}}`` as the bytes the routes serve."""
        return json.dumps({"pulse": self.to_json()}, indent=2).encode()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Pulse:
        """Read a pulse object (or ``{"pulse": {...}}``); ``ValueError`` if malformed."""
        if "pulse" in data and isinstance(data["pulse"], Mapping):
            data = data["pulse"]
        try:
            ext = data["external"]
            pulse = cls(
                uri=_text(data["uri"]),
                version=_text(data["version"]),
                cipher_suite=_integer(data["cipherSuite"]),
                period=_integer(data["period"]),
                certificate_id=bytes.fromhex(data["certificateId"]),
                chain_index=_integer(data["chainIndex"]),
                pulse_index=_integer(data["pulseIndex"]),
                time_stamp=_text(data["timeStamp"]),
                local_random_value=bytes.fromhex(data["localRandomValue"]),
                external=External(
                    bytes.fromhex(ext["sourceId"]),
                    _integer(ext["statusCode"]),
                    bytes.fromhex(ext["value"]),
                ),
                list_values=tuple(
                    ListValue(_text(v["type"]), _text(v["uri"]), bytes.fromhex(v["value"]))
                    for v in data["listValues"]
                ),
                precommitment_value=bytes.fromhex(data["precommitmentValue"]),
                status_code=_integer(data["statusCode"]),
                signature_value=bytes.fromhex(data["signatureValue"]),
                output_value=bytes.fromhex(data["outputValue"]),
            )
            pulse.time_ms  # noqa: B018 - a malformed timeStamp is a malformed pulse
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a Beacon 2.0 pulse: {exc!r}") from None
        return pulse


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _integer(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("expected an integer")
    return value


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">I", len(data)) + data


def _bytes(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def serialize(pulse: Pulse) -> bytes:
    """The bytes the signature covers (NISTIR 8213 §4.3 as NIST implements it)."""
    ext = pulse.external
    return b"".join(
        [
            _string(pulse.uri),
            _string(pulse.version),
            struct.pack(">II", pulse.cipher_suite, pulse.period),
            _bytes(pulse.certificate_id),
            struct.pack(">QQ", pulse.chain_index, pulse.pulse_index),
            _string(pulse.time_stamp),
            _bytes(pulse.local_random_value),
            _bytes(ext.source_id),
            struct.pack(">I", ext.status_code),
            _bytes(ext.value),
            *(_bytes(v.value) for v in pulse.list_values),
            _bytes(pulse.precommitment_value),
            struct.pack(">I", pulse.status_code),
        ]
    )


def output_value(serialization: bytes, signature: bytes) -> bytes:
    """``outputValue`` = SHA-512(serialization ‖ signatureValue) (cipherSuite 0)."""
    return hashlib.sha512(serialization + signature).digest()


def certificate_id(certificate: x509.Certificate) -> bytes:
    """``certificateId``: SHA-512 of the certificate's DER bytes."""
    return hashlib.sha512(certificate.public_bytes(serialization.Encoding.DER)).digest()


def sign(pulse: Pulse, key: rsa.RSAPrivateKey) -> Pulse:
    """``pulse`` with its signatureValue and outputValue (cipherSuite 0)."""
    data = serialize(pulse)
    signature = key.sign(data, padding.PKCS1v15(), hashes.SHA512())
    return replace(pulse, signature_value=signature, output_value=output_value(data, signature))


# --- verification ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed check: which kind, at which pulse, and why."""

    kind: str  # format | certificate | signature | output | link | precommitment | list_value
    chain_index: int
    pulse_index: int
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: pulse {self.chain_index}/{self.pulse_index}: {self.detail}"


def verify_pulse(pulse: Pulse, certificate: x509.Certificate) -> list[Failure]:
    """Check one pulse alone: cipher suite, certificate id, signature, outputValue."""
    failures: list[Failure] = []

    def fail(kind: str, detail: str) -> None:
        failures.append(Failure(kind, pulse.chain_index, pulse.pulse_index, detail))

    if pulse.cipher_suite != CIPHER_SUITE:
        fail("format", f"cipherSuite {pulse.cipher_suite} is not 0")
        return failures
    if pulse.certificate_id != certificate_id(certificate):
        fail("certificate", "certificateId is not the SHA-512 of the certificate given")
    data = serialize(pulse)
    public = certificate.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        fail("certificate", "the certificate's key is not RSA")
    else:
        try:
            public.verify(pulse.signature_value, data, padding.PKCS1v15(), hashes.SHA512())
        except InvalidSignature:
            fail("signature", "signatureValue does not verify under the certificate")
    if pulse.output_value != output_value(data, pulse.signature_value):
        fail("output", "outputValue is not SHA-512(serialization ‖ signatureValue)")
    return failures


def _period_start(kind: str, time_ms: int) -> int:
    moment = datetime.fromtimestamp(time_ms // 1000, UTC)
    if kind == "hour":
        moment = moment.replace(minute=0, second=0)
    elif kind == "day":
        moment = moment.replace(hour=0, minute=0, second=0)
    elif kind == "month":
        moment = moment.replace(day=1, hour=0, minute=0, second=0)
    elif kind == "year":
        moment = moment.replace(month=1, day=1, hour=0, minute=0, second=0)
    else:
        raise ValueError(f"unknown list value type {kind!r}")
    return calendar.timegm(moment.timetuple()) * 1000


def _first_at_or_after(start_ms: int, first_ms: int, period_ms: int) -> int:
    if start_ms <= first_ms:
        return 1
    return 1 + -(-(start_ms - first_ms) // period_ms)


def expected_list_index(kind: str, pulse_index: int, time_ms: int, period_ms: int) -> int | None:
    """The pulse index a list value of ``kind`` names, or None (all zeros).

    A chain has a pulse every period from its pulse 1 (a gap starts a new
    chain), so indexes follow from times. ``previous``: the pulse before.
    ``hour``/``day``/``month``/``year``: the first pulse of the chain in the
    current UTC hour/day/month/year; when that is this pulse itself, the first
    of the period before (not before the chain's first pulse); the pulse
    before when even that is this pulse. Pulse 1 has only zeros.
    """
    if pulse_index <= 1:
        return None
    if kind == "previous":
        return pulse_index - 1
    first_ms = time_ms - (pulse_index - 1) * period_ms
    start = _period_start(kind, time_ms)
    index = _first_at_or_after(start, first_ms, period_ms)
    if index >= pulse_index:
        earlier = _period_start(kind, start - 1)
        index = _first_at_or_after(earlier, first_ms, period_ms)
    return index if index < pulse_index else pulse_index - 1


def pulse_uri(base: str, chain_index: int, pulse_index: int) -> str:
    return f"{base}/chain/{chain_index}/pulse/{pulse_index}"


def verify_chain(
    pulses: Iterable[Pulse],
    certificates: Callable[[bytes], x509.Certificate | None],
    lookup: Callable[[int, int], Pulse | None] | None = None,
) -> list[Failure]:
    """Check ``pulses`` and the links between them; return every failure found.

    Each pulse: :func:`verify_pulse` under ``certificates(certificateId)``.
    Between a pulse and the one before it in its chain: its ``previous`` list
    value is that pulse's outputValue and names it, SHA-512 of its
    localRandomValue is that pulse's precommitmentValue, its time one period
    later. Every list value names (by its URI's path: nodes may serve under
    other hosts) the pulse :func:`expected_list_index` gives and carries its
    outputValue; pulses not in ``pulses`` are asked of
    ``lookup(chain, index)``. A chain's pulse 1 says so (statusCode 1, zeros).
    """
    given = {(p.chain_index, p.pulse_index): p for p in pulses}
    failures: list[Failure] = []

    def find(chain: int, index: int) -> Pulse | None:
        found = given.get((chain, index))
        if found is None and lookup is not None:
            found = lookup(chain, index)
            if found is not None:
                given[chain, index] = found
        return found

    for key in sorted(given):
        pulse = given[key]
        c, i = key

        def fail(kind: str, detail: str, c: int = c, i: int = i) -> None:
            failures.append(Failure(kind, c, i, detail))

        try:
            time_ms = pulse.time_ms
        except ValueError:
            fail("format", f"timeStamp {pulse.time_stamp!r} is malformed")
            continue
        certificate = certificates(pulse.certificate_id)
        if certificate is None:
            fail("certificate", f"no certificate {pulse.certificate_id.hex()[:16]}…")
        else:
            failures.extend(verify_pulse(pulse, certificate))
        if [v.type for v in pulse.list_values] != list(LIST_TYPES):
            fail("format", "listValues are not previous, hour, day, month, year")
            continue
        if i == 1 and pulse.status_code != STATUS_NEW_CHAIN:
            fail("link", f"pulse 1 of a chain has statusCode {pulse.status_code}, not 1")
        previous = find(c, i - 1) if i > 1 else None
        if previous is not None:
            link = pulse.list_value("previous")
            if link is None or link.value != previous.output_value:
                fail("link", "previous list value is not the previous pulse's outputValue")
            if hashlib.sha512(pulse.local_random_value).digest() != previous.precommitment_value:
                fail(
                    "precommitment",
                    "SHA-512(localRandomValue) is not the previous pulse's precommitmentValue",
                )
            if time_ms - previous.time_ms != pulse.period:
                fail("link", "not one period after the previous pulse")
        for value in pulse.list_values:
            index = expected_list_index(value.type, i, time_ms, pulse.period)
            if index is None:
                if value.value != ZERO:
                    fail("list_value", f"{value.type} value of a chain's first pulse is not zero")
                continue
            if not value.uri.endswith(f"/chain/{c}/pulse/{index}"):
                fail("list_value", f"{value.type} value names {value.uri}, not pulse {index}")
            if value.type == "previous" and previous is not None:
                continue  # checked above as a link
            target = find(c, index)
            if target is None:
                fail("list_value", f"{value.type} value's pulse {c}/{index} is unavailable")
            elif value.value != target.output_value:
                fail("list_value", f"{value.type} value is not pulse {index}'s outputValue")
    return failures


def load_certificates(
    pems: Sequence[bytes],
) -> Callable[[bytes], x509.Certificate | None]:
    """A certificate finder (for :func:`verify_chain`) over PEM certificates."""
    table: dict[bytes, x509.Certificate] = {}
    for pem in pems:
        for certificate in x509.load_pem_x509_certificates(pem):
            table[certificate_id(certificate)] = certificate
    return table.get
