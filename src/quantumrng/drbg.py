"""CTR_DRBG with AES-256, NIST SP 800-90A Rev. 1 §10.2.1, with or without derivation function.

Low-level and hazardous: this module is a bare deterministic generator. Its
output is only as unpredictable as the entropy given to it; callers seed it
from good entropy and reseed it. In a forked child every instance is wiped
(NotSeeded until replaced), so parent and child never repeat each other.
``ctr_len`` = blocklen (128 bits), so every Generate keystream is plain
AES-256-CTR starting at V + 1 (Table 3 limits apply).

Secrets in memory (SP 800-90A §8.3, §9.4). What this module overwrites with
zeros, in place:

- the internal state: Key and V live in one 48-byte ``bytearray`` that every
  CTR_DRBG_Update writes in place (the keystream is written straight into it),
  and that ``wipe``/``close`` (uninstantiate), a failed request and a fork (in
  the child) zero;
- the keystream block cut off after an output that ends mid-block (V itself is
  incremented in place to give the cipher its counter block, then overwritten);
- seed material it makes: Block_Cipher_df's input string S (which holds the
  entropy input, nonce and personalization or additional input), its BCC
  output and temp (K || X), and its output; the padded additional input of the
  no-df mode. No-df seed material (entropy input XOR personalization) is never
  made: the entropy input is fed through the Update keystream, the
  personalization XORed into the state afterwards;
- inputs are never copied: a ``bytearray`` or ``memoryview`` given as entropy
  input is used where it is, and stays its owner's to wipe (the engine wipes
  its own); only a non-contiguous buffer is copied once, and that copy is not
  zeroed. Slices are written through memoryviews: CPython first copies a value
  assigned to a ``bytearray``'s slice into a temporary ``bytearray``, a copy
  nobody would zero.

What it cannot wipe, and does not pretend to:

- immutable ``bytes`` a caller passes (``os.urandom``'s result, a pool block's
  data): they live until the garbage collector frees them, and freed memory is
  not cleared;
- the AES key schedule that OpenSSL builds inside each ``cryptography`` cipher
  context (one per Update or Generate call, holding Key or the df key K): it is
  freed when the context is released, at once in CPython, and cleared then only
  as far as OpenSSL clears its own contexts;
- Python ``int`` objects (lengths, the reseed counter, which are not secret)
  and ``generate``'s ``bytes`` result, which belongs to the caller;
- copies outside the process's control: swap, core dumps, hibernation (no
  ``mlock``).
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Sequence
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
_CBC_ROOM: Final = BLOCKLEN - 1  # cryptography's update_into wants this much spare room in CBC

BytesLike = bytes | bytearray | memoryview  # what the DRBG takes without a copy
_ZEROS: Final = memoryview(bytes(MAX_BYTES_PER_REQUEST + BLOCKLEN + SEEDLEN))
_ZERO_BLOCK: Final = bytes(BLOCKLEN)
_NULL: Final = b""  # the default additional input: no preparation, nothing to zero
_ZERO_SEED: Final = bytes(SEEDLEN)
_DF_CIPHER: Final = Cipher(algorithms.AES(bytes(range(KEYLEN))), modes.CBC(bytes(BLOCKLEN)))


def _as_buffer(data: object, name: str) -> BytesLike:
    """Return ``data`` as a flat byte buffer without copying it; an int or str is refused,
    never turned into zeros."""
    if type(data) is bytes or type(data) is bytearray:
        return data
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be bytes-like, not {type(data).__name__}") from None
    if view.c_contiguous:
        return view.cast("B")
    return bytearray(view)  # a strided view: one contiguous copy


def _check_length(data: BytesLike, name: str, low: int, high: int) -> None:
    """Raise ValueError unless ``low <= len(data) <= high``; the message holds lengths only."""
    if not low <= len(data) <= high:
        if low == high:
            raise ValueError(f"{name} must be exactly {low} bytes, got {len(data)}")
        raise ValueError(f"{name} must be {low} to {high} bytes, got {len(data)}")


def _zero(buffer: bytearray | memoryview) -> None:
    """Overwrite ``buffer`` with zeros, in place."""
    n = len(buffer)
    with memoryview(buffer) as view:
        view[:] = _ZEROS[:n] if n <= len(_ZEROS) else bytes(n)


def _xor_into(target: bytearray, data: BytesLike) -> None:
    """XOR ``data`` into the start of ``target`` in place (``data`` padded with zeros)."""
    for i, byte in enumerate(memoryview(data).cast("B")):
        target[i] ^= byte


def _block_cipher_df(parts: Sequence[BytesLike], out: memoryview) -> None:
    """Block_Cipher_df(input_string, seedlen), SP 800-90A §10.3.2, into ``out``.

    ``input_string`` is the concatenation of ``parts``; ``out`` receives seedlen
    bytes and needs ``_CBC_ROOM`` more. Every intermediate is zeroed on return.
    """
    length = sum(len(part) for part in parts)
    if length > _DF_MAX_INPUT_BYTES:
        raise ValueError(f"derivation function input must be at most {_DF_MAX_INPUT_BYTES} bytes")
    size = 8 + length + 1  # S = L || N || input_string || 0x80, padded to a block
    size += -size % BLOCKLEN
    data = bytearray(BLOCKLEN + size)  # the IV block (i || 0^96), then S: BCC's input
    chained = bytearray(len(data) + _CBC_ROOM)
    temp = bytearray(SEEDLEN)
    # written through memoryviews: assigning to a bytearray's slice would copy the value
    # into a temporary bytearray first (CPython), a copy nobody zeroes
    data_view, chained_view, temp_view = memoryview(data), memoryview(chained), memoryview(temp)
    data_view[BLOCKLEN : BLOCKLEN + 8] = length.to_bytes(4) + SEEDLEN.to_bytes(4)
    pos = BLOCKLEN + 8
    for part in parts:
        data_view[pos : pos + len(part)] = part
        pos += len(part)
    data[pos] = 0x80
    last = chained_view[len(data) - BLOCKLEN : len(data)]
    try:
        for i in range(SEEDLEN // BLOCKLEN):
            data[3] = i  # the IV block: i as 32 bits big-endian (i < 3: its low byte), zeros
            # BCC (§10.3.3): the last block of CBC under the df key with a zero IV
            _DF_CIPHER.encryptor().update_into(data, chained)
            temp_view[i * BLOCKLEN : (i + 1) * BLOCKLEN] = last
        key, x = temp_view[:KEYLEN], temp_view[KEYLEN:]
        # X := Block_Encrypt(K, X) three times: CBC over zeros with IV X
        Cipher(algorithms.AES(key), modes.CBC(x)).encryptor().update_into(_ZERO_SEED, out)
    finally:
        _zero(data)
        _zero(chained)
        _zero(temp)


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
    or a fork (in the child). Key and V are overwritten in place and zeroed on
    wipe (see the module docstring for what cannot be).
    """

    __slots__ = (
        "__weakref__",
        "_df",
        "_key",
        "_lock",
        "_reseed_counter",
        "_seeded",
        "_state",
        "_tail",
        "_v",
    )

    SECURITY_STRENGTH: ClassVar[int] = SECURITY_STRENGTH
    KEYLEN: ClassVar[int] = KEYLEN
    BLOCKLEN: ClassVar[int] = BLOCKLEN
    SEEDLEN: ClassVar[int] = SEEDLEN
    MAX_BYTES_PER_REQUEST: ClassVar[int] = MAX_BYTES_PER_REQUEST
    RESEED_INTERVAL: ClassVar[int] = RESEED_INTERVAL

    _state: bytearray  # Key || V, the working state (§10.2.1.1), written in place
    _key: memoryview  # _state[:KEYLEN]
    _v: memoryview  # _state[KEYLEN:]
    _tail: memoryview  # scratch: the keystream cut off after an output ending mid-block
    _seeded: bool
    _reseed_counter: int

    def __init__(
        self,
        entropy_input: BytesLike,
        nonce: BytesLike,
        personalization: BytesLike = b"",
        *,
        derivation_function: bool = True,
    ) -> None:
        """Instantiate, SP 800-90A §10.2.1.3.2 (df) or §10.2.1.3.1 (no df)."""
        self._df = bool(derivation_function)
        self._lock = threading.Lock()
        self._state = bytearray(SEEDLEN)
        state = memoryview(self._state)
        self._key, self._v = state[:KEYLEN], state[KEYLEN:]
        self._tail = memoryview(bytearray(BLOCKLEN))
        self._seeded, self._reseed_counter = False, 0
        entropy = _as_buffer(entropy_input, "entropy_input")
        pers = _as_buffer(personalization, "personalization")
        if self._df:
            _check_length(entropy, "entropy_input", MIN_ENTROPY_BYTES, MAX_INPUT_BYTES)
            nonce_bytes = _as_buffer(nonce, "nonce")
            _check_length(nonce_bytes, "nonce", MIN_NONCE_BYTES, MAX_INPUT_BYTES)
            _check_length(pers, "personalization", 0, MAX_INPUT_BYTES)
            self._update_from_df((entropy, nonce_bytes, pers))
        else:
            _check_length(entropy, "entropy_input", SEEDLEN, SEEDLEN)
            _check_length(pers, "personalization", 0, SEEDLEN)
            self._update_no_df(entropy, pers)
        self._seeded, self._reseed_counter = True, 1
        forksafe.register(self)

    @property
    def reseed_counter(self) -> int:
        """Number of generate requests since the last (re)seed, plus one (§10.2.1.1)."""
        return self._reseed_counter

    @property
    def derivation_function(self) -> bool:
        """Whether inputs pass through Block_Cipher_df (§10.3.2)."""
        return self._df

    def reseed(self, entropy_input: BytesLike, additional_input: BytesLike = b"") -> None:
        """Reseed, SP 800-90A §10.2.1.4.2 (df) or §10.2.1.4.1 (no df); resets the counter."""
        entropy = _as_buffer(entropy_input, "entropy_input")
        additional = _as_buffer(additional_input, "additional_input")
        if self._df:
            _check_length(entropy, "entropy_input", MIN_ENTROPY_BYTES, MAX_INPUT_BYTES)
            _check_length(additional, "additional_input", 0, MAX_INPUT_BYTES)
        else:
            _check_length(entropy, "entropy_input", SEEDLEN, SEEDLEN)
            _check_length(additional, "additional_input", 0, SEEDLEN)
        with self._lock:
            self._check_seeded()
            try:
                if self._df:
                    self._update_from_df((entropy, additional))
                else:
                    self._update_no_df(entropy, additional)
            except BaseException:
                self._drop()
                raise
            self._reseed_counter = 1

    def generate(self, num_bytes: int, additional_input: BytesLike = b"") -> bytes:
        """Return ``num_bytes`` pseudorandom bytes, SP 800-90A §10.2.1.5 (ctr_len = blocklen)."""
        n = _request_length(num_bytes)
        additional = None if additional_input is _NULL else self._additional(additional_input)
        try:
            with self._lock:
                encryptor = self._start(additional)
                try:
                    out = encryptor.update(_ZEROS[:n])
                    self._finish(encryptor, n, additional)
                except BaseException:
                    self._drop()
                    raise
        finally:
            if additional is not None:
                _zero(additional)
        return out

    def generate_into(self, out: memoryview | bytearray, additional_input: BytesLike = b"") -> None:
        """Fill the writable buffer ``out`` as ``generate(len(out))`` would, without a copy."""
        with memoryview(out) as raw, raw.cast("B") as view:
            if view.readonly:
                raise TypeError("generate_into needs a writable buffer")
            n = _request_length(view.nbytes)
            additional = None if additional_input is _NULL else self._additional(additional_input)
            try:
                with self._lock:
                    encryptor = self._start(additional)
                    try:
                        encryptor.update_into(_ZEROS[:n], view)
                        self._finish(encryptor, n, additional)
                    except BaseException:
                        self._drop()
                        raise
            finally:
                if additional is not None:
                    _zero(additional)

    def wipe(self) -> None:
        """Uninstantiate (§9.4): zero Key and V in place; every later call raises NotSeeded."""
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
        status = "seeded" if self._seeded else "wiped"
        return f"<CtrDrbg AES-256 {mode}, {status}>"

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        raise TypeError("a CtrDrbg cannot be copied or pickled: two copies repeat output")

    # -- SP 800-90A functions on the state in place ------------------------------

    def _keystream(self) -> CipherContext:
        """AES-256-CTR under Key whose first block is Block_Encrypt(Key, V + 1 mod 2**128).

        V is incremented in place and given to the cipher as its counter block: every
        caller overwrites Key and V with this keystream's next seedlen bytes (an Update)
        or drops them, so no copy of the counter is made.
        """
        v = self._v
        last = v[BLOCKLEN - 1]
        if last != 0xFF:
            v[BLOCKLEN - 1] = last + 1
        else:  # carry, wrapping at 2**128 (ctr_len = blocklen)
            for i in range(BLOCKLEN - 1, -1, -1):
                if v[i] != 0xFF:
                    v[i] += 1
                    break
                v[i] = 0
        return Cipher(algorithms.AES(self._key), modes.CTR(v)).encryptor()

    def _update(self, provided_data: BytesLike | None) -> None:
        """CTR_DRBG_Update, SP 800-90A §10.2.1.2: Key || V := the next seedlen bytes of
        keystream XOR provided_data, written straight into the state (``None``: zeros)."""
        data = _ZERO_SEED if provided_data is None else provided_data
        self._keystream().update_into(data, self._state)

    def _update_from_df(self, parts: Sequence[BytesLike]) -> None:
        """Update with Block_Cipher_df(parts) as provided_data (df instantiate and reseed)."""
        seed_material = bytearray(SEEDLEN + _CBC_ROOM)
        try:
            view = memoryview(seed_material)
            _block_cipher_df(parts, view)
            self._update(view[:SEEDLEN])
        finally:
            _zero(seed_material)

    def _update_no_df(self, entropy: BytesLike, extra: BytesLike) -> None:
        """Update with entropy XOR extra (padded to seedlen) as provided_data (no df): the
        keystream XORs the entropy in as it is written, then ``extra`` is XORed in place."""
        self._update(entropy)
        if len(extra):
            _xor_into(self._state, extra)

    def _additional(self, additional_input: BytesLike) -> memoryview | None:
        """Prepare additional input for Generate step 2 in a buffer the caller zeroes after
        the request; ``None`` when it is empty (Null)."""
        additional = _as_buffer(additional_input, "additional_input")
        if not len(additional):
            return None
        if self._df:
            _check_length(additional, "additional_input", 0, MAX_INPUT_BYTES)
            out = memoryview(bytearray(SEEDLEN + _CBC_ROOM))
            _block_cipher_df((additional,), out)
            return out[:SEEDLEN]
        _check_length(additional, "additional_input", 0, SEEDLEN)
        padded = memoryview(bytearray(SEEDLEN))
        padded[: len(additional)] = additional
        return padded

    def _check_seeded(self) -> None:
        """Raise NotSeeded when the state was dropped. Caller holds the lock."""
        if not self._seeded:
            raise NotSeeded("the DRBG has no seed (wiped or failed); instantiate a new one")

    def _start(self, additional: memoryview | None) -> CipherContext:
        """Generate steps 1-2 and the keystream for step 4. Caller holds the lock; a
        failure after step 1 drops the state."""
        if not self._seeded:
            raise NotSeeded("the DRBG has no seed (wiped or failed); instantiate a new one")
        if self._reseed_counter > RESEED_INTERVAL:
            raise ReseedRequired("the DRBG reached its reseed interval; reseed it")
        try:
            if additional is not None:
                self._update(additional)
            return self._keystream()
        except BaseException:
            self._drop()
            raise

    def _finish(self, encryptor: CipherContext, n: int, additional: memoryview | None) -> None:
        """Generate steps 6-7: Update from the keystream right after the output blocks."""
        skip = -n % BLOCKLEN
        if skip:  # the rest of the last output block: never output, zeroed at once
            encryptor.update_into(_ZEROS[:skip], self._tail)
            self._tail[:] = _ZERO_BLOCK
        data = _ZERO_SEED if additional is None else additional
        encryptor.update_into(data, self._state)
        self._reseed_counter += 1

    def _drop(self) -> None:
        """Zero Key, V and the scratch block, and forget the counter (fail closed).
        Caller holds the lock."""
        with memoryview(self._state) as state:
            state[:] = _ZERO_SEED
        self._tail[:] = _ZERO_BLOCK
        self._seeded, self._reseed_counter = False, 0
