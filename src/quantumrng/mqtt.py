"""Signed entropy and beacon pulses over MQTT, for fleets of small devices (issue 12).

Topics, under a root ``T`` the publisher is given (``qrng mqtt publish --topic T``):

- ``T/entropy``: one message per entropy chunk, QoS 1, **not retained**. The
  payload is the ``signed`` object of a ``GET /api/v2/bytes?format=base64&signed=true``
  answer, as compact UTF-8 JSON::

      {"result": {"method": "bytes", "parameters": {"n": 32, "format": "base64",
                  "mode": "drbg"}, "data": "<base64 of the n bytes>",
                  "provenance": {...}, "completion_time": "...Z", "serial": 12,
                  "key_serial": ..., "hashed_api_key": "...", "key_id": "..."},
       "signature": "<base64 Ed25519>", "algorithm": "Ed25519"}

  The signature is Ed25519 over the RFC 8785 bytes of ``result``
  (:mod:`quantumrng.signed`), so a device checks a chunk with the service's
  public key alone, and a saved payload is a file ``qrng verify`` reads.
  ``result.serial`` is the service's global serial: it strictly increases on
  the topic (with gaps: other clients draw too), which is how a replayed chunk is
  recognized. One publisher per topic keeps that order.
- ``T/beacon/pulse``: the service's newest Beacon 2.0 pulse, QoS 1, **retained**
  (a subscriber gets the latest pulse as soon as it subscribes): ``{"pulse": {...}}``
  with NIST's field names (draft NISTIR 8213), as ``/beacon/2.0/pulse/last``
  serves it; its RSA signature verifies under the certificate ``certificateId``
  names (:func:`quantumrng.beacon.verify_pulse`), and a saved payload is a file
  ``qrng beacon verify-chain --file`` reads.

MQTT 3.1.1 (what most device stacks speak), clean sessions, no automatic
reconnection: a lost connection is an error, never a silent gap or a redelivery.
A QoS 1 duplicate of a chunk is refused like any replay: the two cannot be told
apart. ``mqtts://`` is MQTT over TLS; the password comes from an owner-only
file or ``QRNG_MQTT_PASSWORD``, never from the command line or the broker URL,
and never reaches a log, an error or a ``repr``.

The pieces: :func:`parse_broker` and :func:`topics` (pure), the payloads
(:func:`chunk_payload`, :func:`pulse_payload`), :class:`Verifier` (pure: one
:class:`Verdict` per message, holding the last serial and the last pulse), and
:class:`Session`, the one place that talks to a broker (``paho-mqtt``, imported
on first use: ``pip install 'quantumrng[mqtt]'``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import secrets
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cryptography import x509

from quantumrng.beacon.pulse import LIST_TYPES, Pulse, certificate_id, verify_pulse
from quantumrng.errors import (
    AuthenticationError,
    ConfigError,
    InvalidRequest,
    PermissionDenied,
    Unavailable,
)
from quantumrng.feed import check_freshness
from quantumrng.keyfiles import read_secret_file
from quantumrng.signed import (
    ALGORITHM,
    RESULT_FIELDS,
    PublicKey,
    parse_rfc3339,
    verify_signed,
)

if TYPE_CHECKING:
    import paho.mqtt.client as paho

__all__ = [
    "DEFAULT_PORTS",
    "ENTROPY",
    "PASSWORD_ENV",
    "PULSE",
    "QOS",
    "Broker",
    "BrokerConfig",
    "Message",
    "Session",
    "Topics",
    "Verdict",
    "Verifier",
    "chunk_payload",
    "parse_broker",
    "pulse_payload",
    "read_password",
    "topics",
]

QOS = 1
ENTROPY = "entropy"
PULSE = "beacon/pulse"
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
PASSWORD_ENV = "QRNG_MQTT_PASSWORD"  # noqa: S105 - the variable's name
DEFAULT_TIMEOUT = 10.0  # seconds for a connection, a PUBACK or a SUBACK
KEEPALIVE = 30  # seconds between PINGREQs on an idle connection
SIGNATURE_BYTES = 64
MAX_TOPIC_BYTES = 65_535  # MQTT 3.1.1 §1.5.3: a UTF-8 string's length is 16 bits

Kind = Literal["entropy", "pulse"]


# --- the broker and the topics ------------------------------------------------------


@dataclass(frozen=True)
class Broker:
    """Where the broker is: ``mqtt://host[:1883]`` or ``mqtts://host[:8883]`` (TLS)."""

    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


def parse_broker(url: str) -> Broker:
    """The :class:`Broker` a URL names; ``InvalidRequest`` (never echoing the URL,
    which may hold a password) when it is not ``mqtt[s]://host[:port]``."""
    shape = "a broker URL is mqtt://host[:port] or mqtts://host[:port]"
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise InvalidRequest(f"{shape}; the port must be 1 to 65535") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidRequest(shape)
    if parts.username is not None or parts.password is not None:
        raise InvalidRequest(
            "give the broker's user with --username and its password with --password-file "
            f"or {PASSWORD_ENV}, not in the broker URL"
        )
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidRequest(shape)
    if port == 0:
        raise InvalidRequest(f"{shape}; the port must be 1 to 65535")
    return Broker(parts.hostname, port or DEFAULT_PORTS[scheme], scheme == "mqtts")


@dataclass(frozen=True)
class Topics:
    """The two topics under a root: ``entropy`` (chunks) and ``pulse`` (retained)."""

    root: str
    entropy: str
    pulse: str

    def kind(self, topic: str) -> Kind | None:
        """Which kind of message a topic carries (None: neither)."""
        return "entropy" if topic == self.entropy else "pulse" if topic == self.pulse else None


def topics(root: str) -> Topics:
    """The layout under ``root`` (a trailing ``/`` dropped); ``InvalidRequest`` for a
    root a publisher may not use: empty, with wildcards (``+``, ``#``) or NUL
    (MQTT 3.1.1 §4.7.3), or starting with ``$`` (the broker's own topics)."""
    root = root.rstrip("/")
    if not root:
        raise InvalidRequest("the topic must not be empty")
    if any(c in root for c in "+#\0"):
        raise InvalidRequest("the topic is a name, without the wildcards + and # (or NUL)")
    if root.startswith("$"):
        raise InvalidRequest("topics starting with $ belong to the broker")
    if len(f"{root}/{PULSE}".encode()) > MAX_TOPIC_BYTES:
        raise InvalidRequest("the topic is too long for MQTT")
    return Topics(root, f"{root}/{ENTROPY}", f"{root}/{PULSE}")


# --- payloads -----------------------------------------------------------------------


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def chunk_payload(signed: Mapping[str, Any]) -> bytes:
    """A chunk's message: the ``signed`` object as compact JSON."""
    return _json_bytes(signed)


def pulse_payload(pulse: Pulse) -> bytes:
    """A pulse's message: ``{"pulse": {...}}`` as compact JSON, NIST's field order."""
    return _json_bytes({"pulse": pulse.to_json()})


# --- verification (pure) ------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What one message was found to be.

    ``verified``: its signature was checked (else only its shape and order);
    ``repeated``: the same pulse as the last one (a retained pulse seen again).
    """

    kind: Kind
    valid: bool
    reason: str  # "ok", or what failed
    verified: bool = False
    serial: int | None = None
    key_id: str | None = None
    chain: int | None = None
    index: int | None = None
    repeated: bool = False
    document: Mapping[str, Any] | None = field(default=None, repr=False)  # holds entropy

    @property
    def name(self) -> str:
        """``entropy serial 12``, ``pulse 1/7`` (chain/index), or the kind alone."""
        if self.kind == "entropy":
            return "entropy" if self.serial is None else f"entropy serial {self.serial}"
        return "pulse" if self.chain is None else f"pulse {self.chain}/{self.index}"

    def line(self) -> str:
        """One line saying what the message was."""
        if not self.valid:
            return f"invalid: {self.name}: {self.reason}"
        if not self.verified:
            return f"{self.name}: well-formed (signature not checked)"
        signer = f", signed by key {self.key_id}" if self.key_id else ""
        return f"{self.name}: valid{signer}" + (" (repeated)" if self.repeated else "")

    def to_json(self) -> dict[str, Any]:
        """The message and its verdict, for one JSON line."""
        out: dict[str, Any] = {"kind": self.kind, "valid": self.valid, "verified": self.verified}
        if self.kind == "entropy":
            out.update(serial=self.serial, key_id=self.key_id)
        else:
            out.update(chain=self.chain, pulse=self.index, repeated=self.repeated)
        if not self.valid:
            out["reason"] = self.reason
        out["message"] = self.document
        return out


def _positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _base64(value: object) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return None


def _parse(payload: bytes) -> object:
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        return None


def _chunk_shape(document: object) -> str | None:
    """What is wrong with a chunk's shape, or None."""
    if not isinstance(document, dict) or set(document) != {"result", "signature", "algorithm"}:
        return "not a signed object (JSON with exactly result, signature and algorithm)"
    result = document["result"]
    if not isinstance(result, dict) or set(result) != RESULT_FIELDS:
        return "result must hold exactly " + ", ".join(sorted(RESULT_FIELDS))
    if not _positive(result["serial"]):
        return "serial must be a positive integer"
    if document["algorithm"] != ALGORITHM:
        return f"algorithm must be {ALGORITHM}"
    signature = _base64(document["signature"])
    if signature is None or len(signature) != SIGNATURE_BYTES:
        return f"signature must be {SIGNATURE_BYTES} bytes in base64"
    if _base64(result["data"]) is None:
        return "data must be base64 (an entropy chunk)"
    return None


def _pulse_shape(document: object) -> Pulse | str:
    """The pulse a payload holds, or what is wrong with it."""
    if not isinstance(document, dict) or set(document) != {"pulse"}:
        return 'not a Beacon 2.0 pulse document ({"pulse": {...}})'
    try:
        pulse = Pulse.from_json(document)
    except ValueError as exc:
        return str(exc)
    if pulse.chain_index < 1 or pulse.pulse_index < 1:
        return "chainIndex and pulseIndex must be positive"
    if tuple(v.type for v in pulse.list_values) != LIST_TYPES:
        return "listValues must be previous, hour, day, month, year"
    return pulse


def _stale(completion_time: object, now: float, max_age: float) -> str | None:
    """Why a chunk signed at ``completion_time`` is not fresh at ``now`` (the rule of
    ``qrng feed``, :func:`quantumrng.feed.check_freshness`), or None."""
    if not isinstance(completion_time, str):
        return "the chunk has no completion_time"
    try:
        completed = parse_rfc3339(completion_time)
    except ValueError:
        return "the chunk's completion_time is not an RFC 3339 time"
    return check_freshness(completed, now, max_age)


class Verifier:
    """Checks each message and its order; holds the last serial and the last pulse.

    Chunks: the shape of a signed object, with ``keys`` its Ed25519 signature
    (:func:`quantumrng.signed.verify_signed`), and a ``serial`` above the last
    one accepted. Pulses: the Beacon 2.0 shape, with ``certificates`` the RSA
    signature and outputValue under the pinned certificate the pulse names; the
    chain index never goes back, nor the pulse index within a chain; the same
    pulse again is accepted as repeated, another pulse at the same index is
    not; a pulse right after the last one must link to it (its ``previous``
    value and precommitment). ``keys`` or ``certificates`` None: that kind is
    checked for shape and order only. A refused message changes nothing.
    """

    def __init__(
        self,
        keys: Sequence[PublicKey] | None = None,
        certificates: Iterable[x509.Certificate] | None = None,
        *,
        last_serial: int | None = None,
        max_age: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = None if keys is None else list(keys)
        self._certificates = (
            None if certificates is None else {certificate_id(c): c for c in certificates}
        )
        self._max_age = max_age
        self._clock = clock
        self.last_serial: int | None = last_serial
        self.last_completion_time: str | None = None
        self.last_pulse: Pulse | None = None

    def check(self, kind: Kind, payload: bytes) -> Verdict:
        """The verdict on one message of ``kind``."""
        return self.check_chunk(payload) if kind == "entropy" else self.check_pulse(payload)

    def check_chunk(self, payload: bytes) -> Verdict:
        """The verdict on one entropy chunk."""
        document = _parse(payload)
        wrong = _chunk_shape(document)
        if wrong is not None or not isinstance(document, dict):
            return Verdict("entropy", False, wrong or "not JSON")
        serial: int = document["result"]["serial"]
        key_id = document["result"]["key_id"]
        verdict = Verdict(
            "entropy",
            False,
            "",
            self._keys is not None,
            serial,
            key_id if isinstance(key_id, str) else None,
            document=document,
        )
        if self._keys is not None:
            checked = verify_signed(document, self._keys)
            if not checked.valid:
                return _with(verdict, reason=checked.reason)
        if self._max_age is not None:
            stale = _stale(document["result"].get("completion_time"), self._clock(), self._max_age)
            if stale is not None:
                return _with(verdict, reason=stale)
        last = self.last_serial
        if last is not None and serial == last:
            return _with(verdict, reason=f"serial {serial} was received already (replayed)")
        if last is not None and serial < last:
            return _with(
                verdict,
                reason=f"serial {serial} is below the last one received, {last} "
                "(replayed or out of order)",
            )
        self.last_serial = serial
        completion_time = document["result"].get("completion_time")
        self.last_completion_time = completion_time if isinstance(completion_time, str) else None
        return _with(verdict, valid=True, reason="ok")

    def check_pulse(self, payload: bytes) -> Verdict:
        """The verdict on one beacon pulse."""
        document = _parse(payload)
        pulse = _pulse_shape(document)
        if isinstance(pulse, str) or not isinstance(document, dict):
            return Verdict("pulse", False, pulse if isinstance(pulse, str) else "not JSON")
        verdict = Verdict(
            "pulse",
            False,
            "",
            self._certificates is not None,
            chain=pulse.chain_index,
            index=pulse.pulse_index,
            document=document,
        )
        if self._certificates is not None:
            certificate = self._certificates.get(pulse.certificate_id)
            if certificate is None:
                return _with(
                    verdict,
                    reason=f"signed under certificate {pulse.certificate_id.hex()[:16]}…, "
                    "not a pinned one",
                )
            failures = verify_pulse(pulse, certificate)
            if failures:
                return _with(verdict, reason=f"{failures[0].kind}: {failures[0].detail}")
        wrong = self._out_of_order(pulse)
        if wrong is not None:
            return _with(verdict, reason=wrong)
        repeated = self.last_pulse == pulse
        self.last_pulse = pulse
        return _with(verdict, valid=True, reason="ok", repeated=repeated)

    def _out_of_order(self, pulse: Pulse) -> str | None:
        last = self.last_pulse
        if last is None or pulse.chain_index > last.chain_index:
            return None
        where = f"{last.chain_index}/{last.pulse_index}"
        if pulse.chain_index < last.chain_index:
            return f"its chain goes back: pulse {where} was received already (replayed)"
        if pulse.pulse_index < last.pulse_index:
            return f"its index goes back: pulse {where} was received already (replayed)"
        if pulse.pulse_index == last.pulse_index:
            return None if pulse == last else "another pulse with the same index was received"
        if pulse.pulse_index == last.pulse_index + 1:
            link = pulse.list_value("previous")
            if link is None or link.value != last.output_value:
                return f"link: its previous value is not pulse {where}'s outputValue"
            if hashlib.sha512(pulse.local_random_value).digest() != last.precommitment_value:
                return f"precommitment: its localRandomValue is not what pulse {where} committed"
        return None


def _with(verdict: Verdict, **changes: Any) -> Verdict:
    return replace(verdict, **changes)


# --- talking to a broker ------------------------------------------------------------


def read_password(path: Path | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The broker password: the first line of the owner-only file ``path``, else
    ``QRNG_MQTT_PASSWORD``, else None. ``ConfigError`` for a file others can read."""
    if path is not None:
        text = read_secret_file(path, "MQTT password", limit=4096)
        try:
            lines = text.decode().splitlines()
        except UnicodeDecodeError:
            raise ConfigError(f"the MQTT password file {path} is not UTF-8") from None
        return lines[0] if lines else ""
    return (os.environ if environ is None else environ).get(PASSWORD_ENV)


@dataclass(frozen=True)
class BrokerConfig:
    """How to reach and log in to a broker; the password never reaches a ``repr``."""

    broker: Broker
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_ca: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if self.password is not None and self.username is None:
            raise InvalidRequest("a broker password needs a --username (MQTT 3.1.1 §3.1.2.9)")
        if (self.client_cert is None) != (self.client_key is None):
            raise InvalidRequest("--client-cert and --client-key go together")
        if not self.broker.tls and (self.tls_ca or self.client_cert):
            raise InvalidRequest("--tls-ca, --client-cert and --client-key need an mqtts:// broker")
        if not 0 < self.timeout < float("inf"):
            raise InvalidRequest("the timeout must be a positive number of seconds")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of an ``mqtts://`` broker (None for ``mqtt://``)."""
        if not self.broker.tls:
            return None
        try:
            context = ssl.create_default_context(
                cafile=None if self.tls_ca is None else str(self.tls_ca)
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the broker CA {self.tls_ca}: {_why(exc)}") from None
        if self.client_cert is not None and self.client_key is not None:
            try:
                context.load_cert_chain(str(self.client_cert), str(self.client_key))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"cannot load the client certificate {self.client_cert}: {_why(exc)}"
                ) from None
        return context


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


@dataclass(frozen=True)
class Message:
    """A message received: its topic, payload (hidden from ``repr``) and retain flag."""

    topic: str
    payload: bytes = field(repr=False)
    retain: bool = False


_LOST = object()


def _paho() -> Any:
    try:
        import paho.mqtt.client as client
    except ImportError:
        raise ConfigError("MQTT needs paho-mqtt: pip install 'quantumrng[mqtt]'") from None
    return client


class Session:
    """One connection to a broker: connect, publish awaiting PUBACK, subscribe awaiting
    SUBACK, receive. Every wait is bounded by ``config.timeout``; a lost connection
    is ``Unavailable``, a refused login ``AuthenticationError``, a refused
    subscription ``PermissionDenied``."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self._mqtt = _paho()
        self._client: paho.Client | None = None
        self._connected = threading.Event()
        self._refused: str | None = None
        self._lost: str | None = None
        self._closing = False
        self._subscribed: dict[int, list[str]] = {}
        self._suback = threading.Condition()
        self._messages: queue.Queue[object] = queue.Queue()

    def __repr__(self) -> str:
        return f"Session({self.config.broker}, user={self.config.username!r})"

    def __enter__(self) -> Session:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # callbacks, on paho's network thread

    def _on_connect(self, client: Any, userdata: Any, flags: Any, code: Any, props: Any) -> None:
        if code.is_failure:
            self._refused = str(code)
        self._connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, code: Any, props: Any) -> None:
        if not self._closing:
            self._lost = self._why_lost(code)
            self._messages.put(_LOST)
        self._connected.set()
        with self._suback:
            self._suback.notify_all()

    def _why_lost(self, code: Any) -> str:
        config = self.config
        if self._connected.is_set():
            return f"the broker {config.broker} closed the connection ({code})"
        hint = ""
        if config.broker.tls and config.client_cert is None:
            hint = " (does it ask for a client certificate? --client-cert, --client-key)"
        return f"the broker {config.broker} closed the connection before accepting it{hint}"

    def _on_subscribe(
        self, client: Any, userdata: Any, mid: int, codes: list[Any], props: Any
    ) -> None:
        with self._suback:
            self._subscribed[mid] = [str(c) if c.is_failure else "" for c in codes]
            self._suback.notify_all()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self._messages.put(Message(message.topic, bytes(message.payload), bool(message.retain)))

    # the caller's side

    def connect(self) -> None:
        """Connect and wait for the broker's CONNACK."""
        mqtt, config = self._mqtt, self.config
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"qrng-{secrets.token_hex(8)}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        client.connect_timeout = config.timeout
        if config.username is not None:
            client.username_pw_set(config.username, config.password)
        context = config.ssl_context()
        if context is not None:
            client.tls_set_context(context)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client
        try:
            client.connect(config.broker.host, config.broker.port, keepalive=KEEPALIVE)
        except (OSError, ValueError) as exc:
            raise Unavailable(
                f"cannot connect to the broker {config.broker}: {_why(exc)}"
            ) from None
        client.loop_start()
        if not self._connected.wait(config.timeout):
            raise Unavailable(
                f"the broker {config.broker} did not accept the connection "
                f"within {config.timeout:g} s"
            )
        if self._refused is not None:
            raise AuthenticationError(
                f"the broker {config.broker} refused the connection: {self._refused}"
            )
        if self._lost is not None:
            raise Unavailable(self._lost)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish with QoS 1 and return once the broker's PUBACK has come."""
        client = self._connected_client()
        info = client.publish(topic, payload, qos=QOS, retain=retain)
        if info.rc != self._mqtt.MQTT_ERR_SUCCESS:
            raise Unavailable(f"cannot publish to {topic}: {self._mqtt.error_string(info.rc)}")
        deadline = time.monotonic() + self.config.timeout
        while not info.is_published():
            if self._lost is not None:
                raise Unavailable(self._lost)
            left = deadline - time.monotonic()
            if left <= 0:
                raise Unavailable(
                    f"the broker {self.config.broker} did not acknowledge a message on "
                    f"{topic} within {self.config.timeout:g} s"
                )
            info.wait_for_publish(min(left, 0.1))

    def subscribe(self, names: Sequence[str]) -> None:
        """Subscribe to ``names`` with QoS 1 and wait for the broker's SUBACK."""
        client = self._connected_client()
        code, mid = client.subscribe([(name, QOS) for name in names])
        if code != self._mqtt.MQTT_ERR_SUCCESS:
            raise Unavailable(f"cannot subscribe: {self._mqtt.error_string(code)}")
        deadline = time.monotonic() + self.config.timeout
        with self._suback:
            while mid not in self._subscribed:
                left = deadline - time.monotonic()
                if self._lost is not None:
                    raise Unavailable(self._lost)
                if left <= 0:
                    raise Unavailable(
                        f"the broker {self.config.broker} did not answer the subscription "
                        f"within {self.config.timeout:g} s"
                    )
                self._suback.wait(left)
            codes = self._subscribed.pop(mid)
        for name, failure in zip(names, codes, strict=False):
            if failure:
                raise PermissionDenied(
                    f"the broker {self.config.broker} refused the subscription to {name}: {failure}"
                )

    def receive(self, timeout: float | None) -> Message | None:
        """The next message, or None after ``timeout`` seconds (None: wait on)."""
        try:
            item = self._messages.get(timeout=timeout)
        except queue.Empty:
            return None
        if not isinstance(item, Message):
            raise Unavailable(self._lost or f"the broker {self.config.broker} went away")
        return item

    def close(self) -> None:
        """Disconnect (a DISCONNECT packet, then the socket) and stop the network thread."""
        client, self._client = self._client, None
        if client is None:
            return
        self._closing = True
        client.disconnect()
        client.loop_stop()

    def _connected_client(self) -> paho.Client:
        if self._client is None or not self._connected.is_set():
            raise Unavailable(f"not connected to the broker {self.config.broker}")
        if self._lost is not None:
            raise Unavailable(self._lost)
        return self._client
