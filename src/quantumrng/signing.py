"""The service's Ed25519 signing keys: made on first start, rotated, listed with their periods.

Without ``signing_key_file`` the keys live in ``<data_dir>/signing/``: each
private key in ``<key_id>.pem`` (PKCS#8, mode 0600, made by
:func:`quantumrng.keyfiles.create_secret_file`) and the public list in
``keys.json`` (key, ``not_before``, ``not_after``). The current key is the
newest without ``not_after``; :func:`rotate` makes a new one and ends the
current one's period, so results it signed still verify against the list.
Running servers follow a rotation on their own (:class:`KeyRing`).
With ``signing_key_file`` that key is the current one (its period starts when
this node first used it). Several nodes of one deployment either share one
key file or each publish their own key in the shared store
(``GET /api/v2/keys/public`` lists both).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from quantumrng.config import Settings
from quantumrng.errors import ConfigError
from quantumrng.keyfiles import KEY_DIR_MODE, create_secret_file, read_secret_file
from quantumrng.signed import ALGORITHM, PublicKey, canonical

__all__ = ["REFRESH_SECONDS", "ROTATION_GRACE_SECONDS", "KeyRing", "SigningKey", "rotate"]

KEYS_FILE = "keys.json"
REFRESH_SECONDS = 1.0  # how often a running ring looks for a rotation
ROTATION_GRACE_SECONDS = 10.0  # a rotated key stays valid this long after the rotation
LOCK_FILE = ".lock"
_lock = threading.Lock()  # one writer of keys.json per process (and flock across them)


@dataclass(frozen=True, repr=False)
class SigningKey:
    """A private key and its public entry; ``repr`` shows the id only."""

    private: Ed25519PrivateKey
    public: PublicKey

    def __repr__(self) -> str:
        return f"SigningKey({self.key_id!r})"

    @property
    def key_id(self) -> str:
        """The public key's RFC 7638 thumbprint."""
        return self.public.key_id

    def sign(self, message: bytes) -> bytes:
        """Ed25519 signature of ``message`` (64 bytes)."""
        return self.private.sign(message)

    def sign_result(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """The ``signed`` object of an answer: ``result`` with a signature over its
        RFC 8785 bytes (``quantumrng.signed``)."""
        signature = self.sign(canonical(dict(result)))
        return {
            "result": dict(result),
            "signature": base64.b64encode(signature).decode("ascii"),
            "algorithm": ALGORITHM,
        }


def _load_private(pem: bytes, where: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"the signing key file {where} is not an unencrypted PEM key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"the signing key file {where} does not hold an Ed25519 key")
    return key


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _read_list(directory: Path) -> list[PublicKey]:
    path = directory / KEYS_FILE
    try:
        data = json.loads(path.read_bytes())
        return [PublicKey.from_json(entry) for entry in data["keys"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"the signing key list {path} is unreadable ({exc})") from None


def _write_list(directory: Path, keys: list[PublicKey]) -> None:
    path = directory / KEYS_FILE
    temp = path.with_name(f".{KEYS_FILE}.{os.getpid()}.tmp")
    body = json.dumps({"keys": [k.to_json() for k in keys]}, indent=2).encode()
    try:
        temp.write_bytes(body)
        os.replace(temp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write the signing key list {path}: {exc.strerror}") from None


def _register(directory: Path, public: Ed25519PublicKey) -> list[PublicKey]:
    """The list with ``public`` in it (added now, current, if it was not)."""
    keys = _read_list(directory)
    entry = PublicKey(public, time.time())
    if any(k.key_id == entry.key_id for k in keys):
        return keys
    keys.append(entry)
    _write_list(directory, keys)
    return keys


def _generate(directory: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    kid = PublicKey(key.public_key(), 0.0).key_id
    create_secret_file(directory / f"{kid}.pem", _pem(key), "signing key")
    return key


class KeyRing:
    """The current signing key and every public key this node has signed with.

    A ring loaded from settings follows :func:`rotate` while the server runs:
    at most every ``REFRESH_SECONDS`` a read of :attr:`current` or
    :attr:`public_keys` looks at ``keys.json`` and, if it changed, loads it
    again, so every worker signs with the new key within that time (well
    inside the old key's ``ROTATION_GRACE_SECONDS``) and no restart is needed.
    """

    def __init__(
        self,
        current: SigningKey,
        public_keys: list[PublicKey],
        *,
        settings: Settings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._current = current
        self._public_keys = public_keys
        self._settings = settings
        self._clock = clock
        self._stamp = _stamp(settings)
        self._checked = clock()
        self._reload = threading.Lock()

    def __repr__(self) -> str:
        return f"KeyRing(current={self.current.key_id!r}, keys={len(self.public_keys)})"

    @property
    def current(self) -> SigningKey:
        """The key that signs now."""
        self._follow()
        return self._current

    @property
    def public_keys(self) -> list[PublicKey]:
        """Every key this node signed with, with its period."""
        self._follow()
        return self._public_keys

    def _follow(self) -> None:
        if self._settings is None or self._clock() - self._checked < REFRESH_SECONDS:
            return
        self.refresh()

    def refresh(self) -> bool:
        """Load the keys again if ``keys.json`` changed since they were read; True if so."""
        settings = self._settings
        if settings is None:
            return False
        with self._reload:
            self._checked = self._clock()
            stamp = _stamp(settings)
            if stamp == self._stamp:
                return False
            fresh = KeyRing.load(settings)
            self._current, self._public_keys, self._stamp = (
                fresh._current,
                fresh._public_keys,
                fresh._stamp,
            )
            return True

    @classmethod
    def load(cls, settings: Settings) -> KeyRing:
        """The node's keys: ``signing_key_file``, else ``<data_dir>/signing/`` (made on
        first start)."""
        directory = settings.signing_dir
        with _exclusive(directory):
            if settings.signing_key_file is not None:
                path = settings.signing_key_file
                private = _load_private(read_secret_file(path, "signing key"), path)
                keys = _register(directory, private.public_key())
            else:
                private, keys = _current_in(directory)
        kid = PublicKey(private.public_key(), 0.0).key_id
        entry = next(k for k in keys if k.key_id == kid)
        return cls(SigningKey(private, entry), keys, settings=settings)


@contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    """One writer of the key list at a time: this process's threads (a lock) and every
    process sharing ``directory`` (``flock`` on ``.lock``), so workers starting
    together make one key, not one each."""
    with _lock:
        try:
            directory.mkdir(mode=KEY_DIR_MODE, parents=True, exist_ok=True)
            fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot create {directory}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _stamp(settings: Settings | None) -> tuple[int, int] | None:
    """What tells that ``keys.json`` changed: its modification time and size."""
    if settings is None:
        return None
    try:
        info = (settings.signing_dir / KEYS_FILE).stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


def _current_in(directory: Path) -> tuple[Ed25519PrivateKey, list[PublicKey]]:
    keys = _read_list(directory)
    for entry in reversed(keys):
        if entry.not_after is None:
            path = directory / f"{entry.key_id}.pem"
            if path.exists():
                return _load_private(read_secret_file(path, "signing key"), path), keys
    private = _generate(directory)
    return private, _register(directory, private.public_key())


def rotate(settings: Settings, *, grace_seconds: float = ROTATION_GRACE_SECONDS) -> PublicKey:
    """Make a new current key in ``<data_dir>/signing/``; the others' periods end
    ``grace_seconds`` from now.

    Running servers switch to the new key within ``REFRESH_SECONDS`` without
    a restart (:class:`KeyRing`); the grace covers what they sign meanwhile,
    so every result signed before or during the rotation still verifies.
    """
    if settings.signing_key_file is not None:
        raise ConfigError("signing_key_file is set: rotate by pointing it at a new key file")
    directory = settings.signing_dir
    with _exclusive(directory):
        now = time.time()
        ends = now + grace_seconds
        keys = [
            k if k.not_after is not None else PublicKey(k.key, k.not_before, ends)
            for k in _read_list(directory)
        ]
        private = _generate(directory)
        entry = PublicKey(private.public_key(), now)
        keys.append(entry)
        _write_list(directory, keys)
    return entry
