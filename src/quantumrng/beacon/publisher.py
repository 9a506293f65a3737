"""The beacon's I/O: its RSA key and certificate, and the thread that publishes pulses.

:func:`load_beacon_key` reads ``beacon_key_file``/``beacon_cert_file`` or makes an
RSA key (mode 0600) and a self-signed X.509 certificate in ``<data_dir>/beacon/``
on first start. :class:`Publisher` holds the pool lease ``beacon`` (one publisher
per deployment) and publishes one pulse per period through the transparency
log; the next pulse's value, committed to by ``precommitmentValue``, is kept as a
pool record sealed (AES-GCM) under a key derived from the node key, so another
node continues the chain after a failover and no store reader learns it early.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from quantumrng.beacon.pulse import (
    CIPHER_SUITE,
    HASH_BYTES,
    LIST_TYPES,
    STATUS_NEW_CHAIN,
    STATUS_OK,
    VERSION,
    ZERO,
    External,
    ListValue,
    Pulse,
    certificate_id,
    expected_list_index,
    format_time,
    pulse_uri,
    serialize,
    sign,
)
from quantumrng.config import Settings
from quantumrng.errors import ConfigError, QuantumRNGError
from quantumrng.harvester import LeaseKeeper, holder_name
from quantumrng.keyfiles import create_secret_file, read_secret_file
from quantumrng.pool.base import Pool
from quantumrng.pool.integrity import decrypt_record, encrypt_record
from quantumrng.transparency.store import Entry, LedgerStore, PulseExists

__all__ = [
    "AppendPulse",
    "LEASE_NAME",
    "BeaconKey",
    "Publisher",
    "certificate_record",
    "load_beacon_key",
    "next_record",
    "open_next",
    "seal_next",
    "self_signed_certificate",
    "stored_pulse",
]

log = logging.getLogger(__name__)

RSA_BITS = 3072
LEASE_NAME = "beacon"
NEXT_RECORD_PREFIX = "beacon:next:"  # + commitment hex: the sealed value it commits to
CERT_RECORD_PREFIX = "beacon:cert:"  # + the first 64 hex digits of a certificate id


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


def self_signed_certificate(key: rsa.RSAPrivateKey, common_name: str) -> x509.Certificate:
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
        certificate = self_signed_certificate(key, f"QuantumRNG beacon {settings.base_url}")
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


_PURPOSE = b"quantumrng beacon next value"


def seal_next(pool_key: bytes, commitment: bytes, value: bytes) -> bytes:
    """``value`` sealed (AES-256-GCM under a key derived from the pool key) for the pulse
    whose precommitmentValue is ``commitment``."""
    return encrypt_record(pool_key, _PURPOSE, value, commitment)


def open_next(pool_key: bytes, commitment: bytes, sealed: bytes) -> bytes | None:
    """The value :func:`seal_next` sealed for ``commitment``, or None if it was not that
    (another pulse's, altered, or under another key)."""
    value = decrypt_record(pool_key, _PURPOSE, sealed, commitment)
    if value is None:
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
                uri=pulse_uri(self.base, chain, index),
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
                values.append(ListValue(kind, pulse_uri(self.base, chain, index - 1), ZERO))
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
