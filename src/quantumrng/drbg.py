"""CTR_DRBG with AES-256, NIST SP 800-90A Rev. 1 §10.2.1, with or without derivation function.

Low-level and hazardous: this module is a bare deterministic generator. Its
output is only as unpredictable as the entropy given to it; callers seed it
from good entropy and reseed it. In a forked child every instance is wiped
(NotSeeded until replaced), so parent and child never repeat each other.
``ctr_len`` = blocklen (128 bits), so every Generate keystream is plain
AES-256-CTR starting at V + 1 (Table 3 limits apply).
"""

from __future__ import annotations

import operator
import threading
from types import TracebackType
from typing import ClassVar, Final, NoReturn, Self, SupportsIndex

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from quantumrng import forksafe
from quantumrng.errors import NotSeeded, ReseedRequired

__all__ = [
    "BLOCKLEN",
    "KEYLEN",
    "MAX_BYTES_PER_REQUEST",
    "RESEED_INTERVAL",
    "SECURITY_STRENGTH",
    "SEEDLEN",
    "CtrDrbg",
]

SECURITY_STRENGTH: Final = 256  # bits
KEYLEN: Final = 32  # bytes, AES-256 key (Table 3)
BLOCKLEN: Final = 16  # bytes, AES block, outlen (Table 3)
SEEDLEN: Final = KEYLEN + BLOCKLEN  # 48 bytes (Table 3)
MAX_BYTES_PER_REQUEST: Final = 2**19 // 8  # 65536 bytes: 2**19 bits (Table 3)
RESEED_INTERVAL: Final = 2**48  # generate requests between reseeds (Table 3)
MAX_INPUT_BYTES: Final = 2**35 // 8  # entropy, personalization, additional input (Table 3)
MIN_ENTROPY_BYTES: Final = SECURITY_STRENGTH // 8  # 32 bytes (§10.2.1.3.2)
MIN_NONCE_BYTES: Final = SECURITY_STRENGTH // 16  # 16 bytes (§8.6.7)
_DF_MAX_INPUT_BYTES: Final = 2**32 - 1  # L is a 32-bit byte count (§10.3.2 step 2)

_V_MASK: Final = (1 << (8 * BLOCKLEN)) - 1
_ZEROS: Final = memoryview(bytes(MAX_BYTES_PER_REQUEST + BLOCKLEN + SEEDLEN))
_DF_CIPHER: Final = Cipher(algorithms.AES(bytes(range(KEYLEN))), modes.CBC(bytes(BLOCKLEN)))


def _as_bytes(data: bytes, name: str) -> bytes:
    """Return ``data`` as bytes; an int or str is refused, never turned into zeros."""
    if type(data) is bytes:
        return data
    try:
        with memoryview(data) as view:
            return view.tobytes()
    except TypeError:
        raise TypeError(f"{name} must be bytes-like, not {type(data).__name__}") from None


def _check_length(data: bytes, name: str, low: int, high: int) -> None:
    """Raise ValueError unless ``low <= len(data) <= high``; the message holds lengths only."""
    if not low <= len(data) <= high:
        if low == high:
            raise ValueError(f"{name} must be exactly {low} bytes, got {len(data)}")
        raise ValueError(f"{name} must be {low} to {high} bytes, got {len(data)}")


def _xor(a: bytes, b: bytes) -> bytes:
    """Return a XOR b for two byte strings of the same length."""
    return (int.from_bytes(a) ^ int.from_bytes(b)).to_bytes(len(a))


def _ctr(key: bytes, v: int) -> CipherContext:
    """AES-256-CTR keystream whose first block is Block_Encrypt(Key, V + 1 mod 2**128)."""
    counter = ((v + 1) & _V_MASK).to_bytes(BLOCKLEN)
    return Cipher(algorithms.AES(key), modes.CTR(counter)).encryptor()


def _new_state(temp: bytes, provided_data: bytes | None) -> tuple[bytes, int]:
    """Split Update's temp (XOR provided_data) into (Key, V), SP 800-90A §10.2.1.2 steps 4-6."""
    if provided_data is not None:
        temp = _xor(temp, provided_data)
    return temp[:KEYLEN], int.from_bytes(temp[KEYLEN:])


def _update(provided_data: bytes | None, key: bytes, v: int) -> tuple[bytes, int]:
    """CTR_DRBG_Update, SP 800-90A §10.2.1.2; ``None`` stands for seedlen zero bits."""
    return _new_state(_ctr(key, v).update(_ZEROS[:SEEDLEN]), provided_data)


def _bcc(iv_block: bytes, data: bytes) -> bytes:
    """BCC (SP 800-90A §10.3.3) under the df key: the CBC-MAC of IV || data, zero IV."""
    encryptor = _DF_CIPHER.encryptor()
    encryptor.update(iv_block)
    return encryptor.update(data)[-BLOCKLEN:]


def _block_cipher_df(input_string: bytes) -> bytes:
    """Block_Cipher_df(input_string, seedlen), SP 800-90A §10.3.2."""
    if len(input_string) > _DF_MAX_INPUT_BYTES:
        raise ValueError(f"derivation function input must be at most {_DF_MAX_INPUT_BYTES} bytes")
    s = b"".join((len(input_string).to_bytes(4), SEEDLEN.to_bytes(4), input_string, b"\x80"))
    s += bytes(-len(s) % BLOCKLEN)
    temp = b"".join(
        _bcc(i.to_bytes(4) + bytes(BLOCKLEN - 4), s) for i in range(SEEDLEN // BLOCKLEN)
    )
    key, x = temp[:KEYLEN], temp[KEYLEN:]
    return Cipher(algorithms.AES(key), modes.CBC(x)).encryptor().update(_ZEROS[:SEEDLEN])


def _request_length(num_bytes: SupportsIndex) -> int:
    """Return ``num_bytes`` as an int in [0, MAX_BYTES_PER_REQUEST] or raise ValueError."""
    n = operator.index(num_bytes)
    if not 0 <= n <= MAX_BYTES_PER_REQUEST:
        raise ValueError(f"a request must be 0 to {MAX_BYTES_PER_REQUEST} bytes, got {n}")
    return n


class CtrDrbg:
    """CTR_DRBG with AES-256 (SP 800-90A §10.2.1), instantiated from the given entropy.

    With ``derivation_function`` (default) inputs pass through Block_Cipher_df;
    without it the entropy input is exactly seedlen (48) bytes, the nonce is
    ignored and personalization/additional input are at most 48 bytes.
    Thread-safe; fails closed with NotSeeded after ``wipe()``, a failed request
    or a fork (in the child).
    """

    __slots__ = ("__weakref__", "_df", "_key", "_lock", "_reseed_counter", "_v")

    SECURITY_STRENGTH: ClassVar[int] = SECURITY_STRENGTH
    KEYLEN: ClassVar[int] = KEYLEN
    BLOCKLEN: ClassVar[int] = BLOCKLEN
    SEEDLEN: ClassVar[int] = SEEDLEN
    MAX_BYTES_PER_REQUEST: ClassVar[int] = MAX_BYTES_PER_REQUEST
    RESEED_INTERVAL: ClassVar[int] = RESEED_INTERVAL

    _key: bytes | None
    _v: int
    _reseed_counter: int

    def __init__(
        self,
        entropy_input: bytes,
        nonce: bytes,
        personalization: bytes = b"",
        *,
        derivation_function: bool = True,
    ) -> None:
        """Instantiate, SP 800-90A §10.2.1.3.2 (df) or §10.2.1.3.1 (no df)."""
        self._df = bool(derivation_function)
        self._lock = threading.Lock()
        self._key, self._v, self._reseed_counter = None, 0, 0
        entropy = _as_bytes(entropy_input, "entropy_input")
        pers = _as_bytes(personalization, "personalization")
        if self._df:
            _check_length(entropy, "entropy_input", MIN_ENTROPY_BYTES, MAX_INPUT_BYTES)
            nonce_bytes = _as_bytes(nonce, "nonce")
            _check_length(nonce_bytes, "nonce", MIN_NONCE_BYTES, MAX_INPUT_BYTES)
            _check_length(pers, "personalization", 0, MAX_INPUT_BYTES)
            seed_material = _block_cipher_df(entropy + nonce_bytes + pers)
        else:
            _check_length(entropy, "entropy_input", SEEDLEN, SEEDLEN)
            _check_length(pers, "personalization", 0, SEEDLEN)
            seed_material = _xor(entropy, pers.ljust(SEEDLEN, b"\x00"))
        self._key, self._v = _update(seed_material, bytes(KEYLEN), 0)
        self._reseed_counter = 1
        forksafe.register(self)

    @property
    def reseed_counter(self) -> int:
        """Number of generate requests since the last (re)seed, plus one (§10.2.1.1)."""
        return self._reseed_counter

    @property
    def derivation_function(self) -> bool:
        """Whether inputs pass through Block_Cipher_df (§10.3.2)."""
        return self._df

    def reseed(self, entropy_input: bytes, additional_input: bytes = b"") -> None:
        """Reseed, SP 800-90A §10.2.1.4.2 (df) or §10.2.1.4.1 (no df); resets the counter."""
        entropy = _as_bytes(entropy_input, "entropy_input")
        additional = _as_bytes(additional_input, "additional_input")
        if self._df:
            _check_length(entropy, "entropy_input", MIN_ENTROPY_BYTES, MAX_INPUT_BYTES)
            _check_length(additional, "additional_input", 0, MAX_INPUT_BYTES)
            seed_material = _block_cipher_df(entropy + additional)
        else:
            _check_length(entropy, "entropy_input", SEEDLEN, SEEDLEN)
            _check_length(additional, "additional_input", 0, SEEDLEN)
            seed_material = _xor(entropy, additional.ljust(SEEDLEN, b"\x00"))
        with self._lock:
            key = self._seeded_key()
            self._key, self._v = _update(seed_material, key, self._v)
            self._reseed_counter = 1

    def generate(self, num_bytes: int, additional_input: bytes = b"") -> bytes:
        """Return ``num_bytes`` pseudorandom bytes, SP 800-90A §10.2.1.5 (ctr_len = blocklen)."""
        n = _request_length(num_bytes)
        additional = self._additional(additional_input)
        with self._lock:
            encryptor = self._start(additional)
            try:
                out = encryptor.update(_ZEROS[:n])
                self._finish(encryptor, n, additional)
            except BaseException:
                self._drop()
                raise
        return out

    def generate_into(self, out: memoryview | bytearray, additional_input: bytes = b"") -> None:
        """Fill the writable buffer ``out`` as ``generate(len(out))`` would, without a copy."""
        additional = self._additional(additional_input)
        with memoryview(out) as raw, raw.cast("B") as view:
            if view.readonly:
                raise TypeError("generate_into needs a writable buffer")
            n = _request_length(view.nbytes)
            with self._lock:
                encryptor = self._start(additional)
                try:
                    encryptor.update_into(_ZEROS[:n], view)
                    self._finish(encryptor, n, additional)
                except BaseException:
                    self._drop()
                    raise

    def wipe(self) -> None:
        """Drop Key and V; every later reseed or generate raises NotSeeded."""
        with self._lock:
            self._drop()

    close = wipe

    def after_fork_in_child(self) -> None:
        """Wipe in a forked child (``forksafe``): parent and child never repeat
        each other. The lock is replaced first, since a parent thread may hold it."""
        self._lock = threading.Lock()
        self._drop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.wipe()

    def __repr__(self) -> str:
        mode = "use df" if self._df else "no df"
        status = "seeded" if self._key is not None else "wiped"
        return f"<CtrDrbg AES-256 {mode}, {status}>"

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        raise TypeError("a CtrDrbg cannot be copied or pickled: two copies repeat output")

    def _additional(self, additional_input: bytes) -> bytes | None:
        """Prepare additional input for Generate step 2; ``None`` when it is empty (Null)."""
        additional = _as_bytes(additional_input, "additional_input")
        if not additional:
            return None
        if self._df:
            _check_length(additional, "additional_input", 0, MAX_INPUT_BYTES)
            return _block_cipher_df(additional)
        _check_length(additional, "additional_input", 0, SEEDLEN)
        return additional.ljust(SEEDLEN, b"\x00")

    def _seeded_key(self) -> bytes:
        """Return Key, or raise NotSeeded when the state was dropped. Caller holds the lock."""
        if self._key is None:
            raise NotSeeded("the DRBG has no seed (wiped or failed); instantiate a new one")
        return self._key

    def _start(self, additional: bytes | None) -> CipherContext:
        """Generate steps 1-2 and the keystream for step 4. Caller holds the lock."""
        key = self._seeded_key()
        if self._reseed_counter > RESEED_INTERVAL:
            raise ReseedRequired("the DRBG reached its reseed interval; reseed it")
        v = self._v
        if additional is not None:
            key, v = _update(additional, key, v)
        self._key, self._v = key, v
        return _ctr(key, v)

    def _finish(self, encryptor: CipherContext, n: int, additional: bytes | None) -> None:
        """Generate steps 6-7: Update from the keystream right after the output blocks."""
        skip = -n % BLOCKLEN
        temp = encryptor.update(_ZEROS[: skip + SEEDLEN])[skip:]
        self._key, self._v = _new_state(temp, additional)
        self._reseed_counter += 1

    def _drop(self) -> None:
        """Forget Key, V and the counter (fail closed). Caller holds the lock."""
        self._key, self._v, self._reseed_counter = None, 0, 0


