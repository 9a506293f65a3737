"""The public beacon in the NIST Randomness Beacon 2.0 format (draft NISTIR 8213).

Pure part: the :class:`Pulse` and its JSON as NIST serves it, :func:`serialize`
(the bytes the signature covers), :func:`sign`, :func:`verify_pulse` and
:func:`verify_chain`. I/O part: :func:`load_beacon_key` (RSA key and X.509
certificate, made on first start in ``<data_dir>/beacon/``) and
:class:`Publisher`, the thread that publishes one pulse per period.

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
import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID

from quantumrng.config import Settings
from quantumrng.errors import ConfigError, QuantumRNGError
from quantumrng.harvester import LeaseKeeper, holder_name
from quantumrng.keyfiles import create_secret_file, read_secret_file
from quantumrng.pool.base import Pool
from quantumrng.transparency.store import Entry, LedgerStore, PulseExists

__all__ = [
    "CIPHER_SUITE",
    "LIST_TYPES",
    "STATUS_NEW_CHAIN",
    "STATUS_OK",
    "VERSION",
    "BeaconKey",
    "External",
    "Failure",
    "ListValue",
    "Publisher",
    "Pulse",
    "certificate_id",
    "expected_list_index",
    "format_time",
    "load_beacon_key",
    "output_value",
    "parse_time",
    "serialize",
    "sign",
    "verify_chain",
    "verify_pulse",
]

log = logging.getLogger(__name__)

VERSION = "2.0"  # as NIST's beacon serves it now
CIPHER_SUITE = 0  # SHA-512, RSA PKCS#1 v1.5 over SHA-512
HASH_BYTES = 64
ZERO = bytes(HASH_BYTES)
LIST_TYPES = ("previous", "hour", "day", "month", "year")
STATUS_OK = 0
STATUS_NEW_CHAIN = 1  # the first pulse of a chain: its previous value is all zeros
RSA_BITS = 3072
LEASE_NAME = "beacon"
NEXT_RECORD_PREFIX = "beacon:next:"  # + commitment hex: the sealed value it commits to
CERT_RECORD_PREFIX = "beacon:cert:"  # + the first 64 hex digits of a certificate id


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


def _pulse_uri(base: str, chain_index: int, pulse_index: int) -> str:
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


# --- keys ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BeaconKey:
    """The RSA signing key and its X.509 certificate (the key never reaches a repr)."""

    private_key: rsa.RSAPrivateKey = field(repr=False)
    certificate: x509.Certificate

    @property
    def certificate_id(self) -> bytes:
        """SHA-512 of the certificate's DER."""
        return certificate_id(self.certificate)

    @property
    def certificate_pem(self) -> str:
        """The certificate, PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()


def _self_signed(key: rsa.RSAPrivateKey, common_name: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA512())
    )


def _load_key(path: Path) -> rsa.RSAPrivateKey:
    data = read_secret_file(path, "beacon key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError:
        raise ConfigError(f"the beacon key file {path} is not a PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
        raise ConfigError(f"the beacon key file {path} does not hold an RSA key of 2048+ bits")
    return key


def _load_certificate(path: Path, key: rsa.RSAPrivateKey) -> x509.Certificate:
    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the beacon certificate {path}: {exc}") from None
    if certificate.public_key() != key.public_key():
        raise ConfigError(f"the beacon certificate {path} is not for the beacon key")
    return certificate


def load_beacon_key(settings: Settings) -> BeaconKey:
    """The beacon's key and certificate: ``beacon_key_file`` and ``beacon_cert_file``,
    else ``<data_dir>/beacon/key.pem`` (mode 0600) and ``certificate.pem``, made on
    first start (RSA-3072, self-signed); every process of a data directory gets the
    same pair, whichever made it."""
    if settings.beacon_key_file is not None and settings.beacon_cert_file is not None:
        key = _load_key(settings.beacon_key_file)
        return BeaconKey(key, _load_certificate(settings.beacon_cert_file, key))
    directory = settings.data_dir / "beacon"
    key_path, cert_path = directory / "key.pem", directory / "certificate.pem"
    if not key_path.exists():
        made = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        pem = made.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        if create_secret_file(key_path, pem, "beacon key"):
            log.info("created the beacon key %s", key_path)
    key = _load_key(key_path)
    if not cert_path.exists():
        certificate = _self_signed(key, f"QuantumRNG beacon {settings.base_url}")
        pem = certificate.public_bytes(serialization.Encoding.PEM)
        create_secret_file(cert_path, pem, "beacon certificate")
    return BeaconKey(key, _load_certificate(cert_path, key))


def next_record(commitment: bytes) -> str:
    """The pool record that holds the sealed value ``commitment`` commits to."""
    return NEXT_RECORD_PREFIX + commitment.hex()[:64]


def certificate_record(cert_id: bytes) -> str:
    """The pool record that holds the certificate ``cert_id`` for every node."""
    return CERT_RECORD_PREFIX + cert_id.hex()[:64]


# --- the sealed precommitted value -----------------------------------------------------


def _seal_key(pool_key: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"quantumrng beacon next value").derive(
        pool_key
    )


def seal_next(pool_key: bytes, commitment: bytes, value: bytes) -> bytes:
    """``value`` sealed (AES-256-GCM under a key derived from the pool key) for the pulse
    whose precommitmentValue is ``commitment``."""
    nonce = os.urandom(12)
    return nonce + AESGCM(_seal_key(pool_key)).encrypt(nonce, value, commitment)


def open_next(pool_key: bytes, commitment: bytes, sealed: bytes) -> bytes | None:
    """The value :func:`seal_next` sealed for ``commitment``, or None if it was not that
    (another pulse's, altered, or under another key)."""
    try:
        value = AESGCM(_seal_key(pool_key)).decrypt(sealed[:12], sealed[12:], commitment)
    except (InvalidTag, ValueError):
        return None
    return value if hashlib.sha512(value).digest() == commitment else None


# --- the publisher ---------------------------------------------------------------------

AppendPulse = Callable[[int, int, int, bytes, bytes], Entry]


def stored_pulse(entry: Entry | None) -> Pulse | None:
    """The pulse a ledger entry holds, or None."""
    if entry is None or entry.document is None:
        return None
    return Pulse.from_json(json.loads(entry.document))


class Publisher:
    """Publishes one pulse every ``period`` seconds, at period boundaries, from whichever
    process of the deployment holds the pool lease ``beacon``.

    ``localRandomValue`` is 64 bytes of ``random_bytes`` (the node's quantum-seeded
    DRBG). The value of the next pulse is drawn before this one is signed, so that
    ``precommitmentValue`` commits to it; until its pulse is published it exists
    only in this process and, sealed under a key derived from the pool key that
    every node shares, in the pool record ``beacon:next:<commitment>``, so that the next
    leader continues the chain without the value ever being stored in clear.
    A period without a pulse (every node down), or a sealed value that does not
    open, starts a new chain (statusCode 1).
    """

    def __init__(
        self,
        store: LedgerStore,
        append: AppendPulse,
        pool: Pool,
        key: BeaconKey,
        *,
        pool_key: bytes,
        random_bytes: Callable[[int], bytes],
        period: int,
        base_url: str,
        lease_seconds: float = 10.0,
        holder: str = "",
    ) -> None:
        self.store = store
        self.append = append
        self.pool = pool
        self.key = key
        self._pool_key = pool_key
        self._random = random_bytes
        self.period_ms = period * 1000
        self.base = base_url.rstrip("/") + "/beacon/2.0"
        self._keeper = LeaseKeeper(pool, LEASE_NAME, holder_name(holder), lease_seconds)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next: tuple[bytes, bytes] | None = None  # (commitment, value) held here
        self.published = 0
        self.last_error: str | None = None

    def __repr__(self) -> str:
        return f"Publisher(period_ms={self.period_ms}, base={self.base!r})"

    def publish(self, time_ms: int) -> Pulse | None:
        """Publish the pulse of ``time_ms`` (a period boundary) unless it exists; return it.

        Raises ``PulseExists`` when another process stored it first.
        """
        last = stored_pulse(self.store.last_pulse())
        if last is not None and last.time_ms >= time_ms:
            return None
        local = None
        if last is not None and last.time_ms == time_ms - self.period_ms:
            local = self._committed(last.precommitment_value)
        if last is not None and local is not None:
            chain, index, status = last.chain_index, last.pulse_index + 1, STATUS_OK
        else:
            chain = last.chain_index + 1 if last is not None else 1
            index, status, local = 1, STATUS_NEW_CHAIN, self._random(HASH_BYTES)
        following = self._random(HASH_BYTES)
        commitment = hashlib.sha512(following).digest()
        self._next = (commitment, following)
        record = next_record(commitment)
        self.pool.write_record(record, seal_next(self._pool_key, commitment, following))
        pulse = sign(
            Pulse(
                uri=_pulse_uri(self.base, chain, index),
                version=VERSION,
                cipher_suite=CIPHER_SUITE,
                period=self.period_ms,
                certificate_id=self.key.certificate_id,
                chain_index=chain,
                pulse_index=index,
                time_stamp=format_time(time_ms),
                local_random_value=local,
                external=External(),
                list_values=self._list_values(chain, index, time_ms, last),
                precommitment_value=commitment,
                status_code=status,
            ),
            self.key.private_key,
        )
        try:
            self.append(chain, index, time_ms, serialize(pulse), pulse.document())
        except PulseExists:
            self._next = None
            self.pool.write_record(record, None)
            raise
        if status == STATUS_OK and last is not None:
            self.pool.write_record(next_record(last.precommitment_value), None)  # published
        self.published += 1
        return pulse

    def _committed(self, commitment: bytes) -> bytes | None:
        """The value the last pulse committed to: held here, or unsealed from the pool."""
        if self._next is not None and self._next[0] == commitment:
            return self._next[1]
        sealed = self.pool.read_record(next_record(commitment))
        value = None if sealed is None else open_next(self._pool_key, commitment, sealed)
        if value is None:
            log.warning("beacon: the committed value is unavailable; starting a new chain")
        return value

    def _list_values(
        self, chain: int, index: int, time_ms: int, last: Pulse | None
    ) -> tuple[ListValue, ...]:
        values = []
        for kind in LIST_TYPES:
            target = expected_list_index(kind, index, time_ms, self.period_ms)
            if target is None:
                values.append(ListValue(kind, _pulse_uri(self.base, chain, index - 1), ZERO))
                continue
            if last is not None and (last.chain_index, last.pulse_index) == (chain, target):
                found: Pulse | None = last
            else:
                found = stored_pulse(self.store.pulse(chain, target))
            if found is None:
                raise QuantumRNGError(f"beacon: pulse {chain}/{target} is missing from the store")
            values.append(ListValue(kind, found.uri, found.output_value))
        return tuple(values)

    def register_certificate(self) -> None:
        """Publish this node's certificate for the certificate route of every node."""
        self.pool.write_record(
            certificate_record(self.key.certificate_id), self.key.certificate_pem.encode()
        )

    def start(self) -> None:
        """Start the lease and the publishing thread (once)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self.register_certificate()
        self._stop.clear()
        self._keeper.start()
        self._thread = threading.Thread(target=self._run, name="qrng-beacon", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop publishing and release the lease (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._keeper.stop()
        self._next = None

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time() * 1000
            boundary = (int(now) // self.period_ms + 1) * self.period_ms
            if self._stop.wait(max(0.0, (boundary - now) / 1000)):
                return
            if self._keeper.lease is None:
                continue
            try:
                self.publish(boundary)
                self.last_error = None
            except PulseExists:
                pass  # another process published this one
            except QuantumRNGError as exc:
                self.last_error = exc.message
                log.warning("beacon: pulse at %d not published (%s)", boundary, exc.message)
            except Exception:  # a bug must not end the beacon silently
                log.exception("beacon: pulse at %d not published", boundary)


def load_certificates(
    pems: Sequence[bytes],
) -> Callable[[bytes], x509.Certificate | None]:
    """A certificate finder (for :func:`verify_chain`) over PEM certificates."""
    table: dict[bytes, x509.Certificate] = {}
    for pem in pems:
        for certificate in x509.load_pem_x509_certificates(pem):
            table[certificate_id(certificate)] = certificate
    return table.get
