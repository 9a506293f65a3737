"""``qrng mqtt publish`` and ``qrng mqtt subscribe``: signed entropy and beacon pulses
over an MQTT broker, for devices that speak MQTT rather than HTTPS.

- ``publish --broker URL --topic T --url SERVICE`` takes signed entropy chunks
  (``--bytes`` each) from the service and its newest beacon pulse, and publishes
  them with QoS 1 (topics and payloads: :mod:`quantumrng.mqtt`): a chunk on
  ``T/entropy`` every ``--interval`` seconds, ``--count`` of them (default: until
  interrupted), each counted only once the broker's PUBACK has come; a new pulse
  on ``T/beacon/pulse``, retained, as soon as the service has one (checked every
  second). A service whose beacon is off publishes chunks only, said once.
  One line per message published on standard output.
- ``subscribe --broker URL --topic T [--verify ...]`` receives them and checks
  each (:class:`quantumrng.mqtt.Verifier`): one line per message on standard
  output (``entropy serial 12: valid, signed by key K``, ``pulse 1/7: valid``), or
  with ``--json`` one JSON object per message (its verdict and the message).
  A device that restarts keeps its replay check with ``--state FILE`` (the last
  chunk serial accepted, saved before the chunk is printed); ``--max-age S``
  also refuses chunks signed more than S seconds from this host's clock, the
  rule of ``qrng feed``, so a replay to a newly started device is caught too.

The broker: ``mqtt://host[:1883]`` or ``mqtts://host[:8883]`` (TLS; ``--tls-ca``,
``--client-cert``/``--client-key``); ``--username`` with the password from an
owner-only ``--password-file`` or ``QRNG_MQTT_PASSWORD`` (never a flag: it would
show in ``ps``).

Exit status: 0 when ``--count`` messages were published (acknowledged) or
received (valid); 1 with one line on standard error on an invalid message (a
bad signature, a replayed or out-of-order serial or pulse, a malformed
payload), a timeout, a broker that refuses or drops the connection, or a
service error; 2 for bad arguments or unreadable files.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from quantumrng import feed
from quantumrng.cli.options import (
    CA_FILE,
    KEYS,
    PUBLIC_KEY,
    json_option,
    pinned_keys,
    read_last_serial,
    service_url_option,
)
from quantumrng.errors import InvalidRequest, QuantumRNGError, Unavailable
from quantumrng.keyfiles import replace_file
from quantumrng.mqtt import (
    DEFAULT_TIMEOUT,
    BrokerConfig,
    Session,
    Topics,
    Verifier,
    chunk_payload,
    parse_broker,
    pulse_payload,
    read_password,
    topics,
)

if TYPE_CHECKING:
    from cryptography import x509

    from quantumrng.beacon.pulse import Pulse

__all__ = ["COMMANDS", "mqtt_group"]

PULSE_PATH = "/beacon/2.0/pulse/last"
PULSE_CHECK_SECONDS = 1.0  # how often the publisher asks the service for a new pulse
MAX_CHUNK_BYTES = 1 << 16


class _Failed(click.ClickException):
    """A message, a wait or a check failed: one line, exit status 1."""

    exit_code = 1


def _broker_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options both commands take to reach and log in to the broker."""
    options = (
        click.option(
            "--broker",
            required=True,
            help="mqtt://host[:1883], or mqtts://host[:8883] for TLS.",
        ),
        click.option(
            "--topic",
            required=True,
            help="Root topic T: chunks on T/entropy, the latest pulse (retained) on "
            "T/beacon/pulse.",
        ),
        click.option("--username", help="The broker user."),
        click.option(
            "--password-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Owner-only file whose first line is the broker password "
            "(default: $QRNG_MQTT_PASSWORD).",
        ),
        click.option(
            "--tls-ca",
            type=click.Path(dir_okay=False, path_type=Path),
            help="CA bundle the mqtts:// broker's certificate chains to (default: the system's).",
        ),
        click.option(
            "--client-cert",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Client certificate (PEM) for a broker that asks for one.",
        ),
        click.option(
            "--client-key",
            type=click.Path(dir_okay=False, path_type=Path),
            help="The client certificate's private key (PEM).",
        ),
    )
    for option in reversed(options):
        f = option(f)
    return f


def _usage(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except InvalidRequest as exc:
        raise click.UsageError(exc.message) from None


def _broker_config(
    broker: str,
    username: str | None,
    password_file: Path | None,
    tls_ca: Path | None,
    client_cert: Path | None,
    client_key: Path | None,
    timeout: float,
) -> BrokerConfig:
    """The broker's address and login; the password only ever comes from a file or
    the environment, and the environment's only with ``--username``."""
    where = _usage(lambda: parse_broker(broker))
    if password_file is not None and username is None:
        raise click.UsageError("--password-file needs --username")
    password = read_password(password_file) if username is not None else None
    config: BrokerConfig = _usage(
        lambda: BrokerConfig(
            where, username, password, tls_ca, client_cert, client_key, timeout=timeout
        )
    )
    if password is not None and not where.tls and not _loopback(where.host):
        click.echo(
            f"note: the password goes to {where} unencrypted; use mqtts:// for TLS", err=True
        )
    return config


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _topics(topic: str) -> Topics:
    layout: Topics = _usage(lambda: topics(topic))
    return layout


@click.group("mqtt")
def mqtt_group() -> None:
    """Signed entropy chunks and beacon pulses over an MQTT broker."""


# --- publish ------------------------------------------------------------------------


class _Beacon:
    """The service's newest pulse, ``GET /beacon/2.0/pulse/last`` (None: no pulse)."""

    def __init__(self, url: str, verify: bool | ssl.SSLContext, timeout: float) -> None:
        import httpx

        self._url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self._url,
            verify=verify,
            timeout=timeout,
            headers={"User-Agent": "quantumrng-mqtt"},
        )

    def close(self) -> None:
        self._http.close()

    def last(self) -> Pulse | None:
        import httpx

        from quantumrng.beacon.pulse import Pulse
        from quantumrng.client import error_from_response

        try:
            response = self._http.get(PULSE_PATH)
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"cannot reach {self._url}{PULSE_PATH}: {type(exc).__name__}"
            ) from None
        if response.status_code == 404:
            return None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200:
            raise error_from_response(response.status_code, body, response.headers)
        try:
            return Pulse.from_json(body)
        except (ValueError, TypeError):
            raise QuantumRNGError(
                f"the service's answer to {PULSE_PATH} is not a Beacon 2.0 pulse"
            ) from None


class _Publisher:
    """Publishes chunks and, when the service has a new one, its pulse."""

    def __init__(self, session: Session, layout: Topics, beacon: _Beacon) -> None:
        self.session = session
        self.layout = layout
        self.beacon = beacon
        self.last_pulse: tuple[int, int] | None = None
        self.said_no_beacon = False
        self.next_check = 0.0

    def pulse_if_due(self) -> None:
        if time.monotonic() < self.next_check:
            return
        self.next_check = time.monotonic() + PULSE_CHECK_SECONDS
        pulse = self.beacon.last()
        if pulse is None:
            if not self.said_no_beacon and self.last_pulse is None:
                click.echo(
                    "note: the service has no beacon pulse (its beacon is off, or has not "
                    f"pulsed yet): publishing entropy chunks only on {self.layout.entropy}",
                    err=True,
                )
                self.said_no_beacon = True
            return
        where = (pulse.chain_index, pulse.pulse_index)
        if where == self.last_pulse:
            return
        self.session.publish(self.layout.pulse, pulse_payload(pulse), retain=True)
        self.last_pulse = where
        click.echo(f"published pulse {where[0]}/{where[1]} to {self.layout.pulse} (retained)")

    def chunk(self, signed: dict[str, Any]) -> None:
        self.session.publish(self.layout.entropy, chunk_payload(signed))
        click.echo(
            f"published entropy serial {signed['result']['serial']} to {self.layout.entropy}"
        )

    def wait(self, seconds: float) -> None:
        """Sleep ``seconds``, publishing any new pulse meanwhile."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(max(0.0, min(left, self.next_check - time.monotonic())))
            self.pulse_if_due()


@mqtt_group.command("publish")
@_broker_options
@service_url_option("The QuantumRNG service whose signed entropy and beacon are published.")
@click.option(
    "--count",
    type=click.IntRange(min=1),
    help="Chunks to publish, then exit (default: until interrupted).",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Seconds between chunks.",
)
@click.option(
    "--bytes",
    "size",
    type=click.IntRange(min=1, max=MAX_CHUNK_BYTES),
    default=32,
    show_default=True,
    help="Entropy bytes per chunk.",
)
@CA_FILE
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Longest wait, seconds, for the broker (connection, each PUBACK) and the service.",
)
def publish_command(
    broker: str,
    topic: str,
    username: str | None,
    password_file: Path | None,
    tls_ca: Path | None,
    client_cert: Path | None,
    client_key: Path | None,
    url: str,
    count: int | None,
    interval: float,
    size: int,
    ca_file: str | None,
    timeout: float,
) -> None:
    """Publish signed entropy chunks (QoS 1) and the beacon's latest pulse (retained)."""
    from quantumrng.client import Client

    layout = _topics(topic)
    config = _broker_config(
        broker, username, password_file, tls_ca, client_cert, client_key, timeout
    )
    verify: bool | ssl.SSLContext = True
    if ca_file:
        try:
            verify = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise click.UsageError(f"cannot load the CA bundle {ca_file}: {exc}") from None
    beacon = _Beacon(url, verify, timeout)
    try:
        with Session(config) as session, Client(url, timeout=timeout, verify=verify) as client:
            publisher = _Publisher(session, layout, beacon)
            published = 0
            while count is None or published < count:
                publisher.pulse_if_due()
                _, signed = client.signed_bytes(size)
                publisher.chunk(signed)
                published += 1
                if count is None or published < count:
                    publisher.wait(interval)
    finally:
        beacon.close()


# --- subscribe ----------------------------------------------------------------------


def _read_certificates(paths: tuple[Path, ...]) -> list[x509.Certificate]:
    from cryptography import x509

    found: list[x509.Certificate] = []
    for path in paths:
        try:
            found += x509.load_pem_x509_certificates(path.read_bytes())
        except OSError as exc:
            raise click.UsageError(f"cannot read {path}: {exc.strerror}") from None
        except ValueError:
            raise click.UsageError(f"{path} holds no PEM certificate") from None
    return found


@mqtt_group.command("subscribe")
@_broker_options
@click.option(
    "--verify",
    is_flag=True,
    help="Check signatures: chunks against the pinned keys, pulses against the pinned "
    "certificate. Without it, only each message's shape and order are checked.",
)
@PUBLIC_KEY
@KEYS
@click.option(
    "--certificate",
    "certificates",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The beacon's pinned certificate (PEM; repeatable).",
)
@click.option(
    "--only",
    type=click.Choice(["entropy", "beacon"]),
    help="Subscribe to one topic: T/entropy or T/beacon/pulse (default: both).",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    help="Exit 0 after this many valid messages, chunks and pulses alike "
    "(default: until interrupted).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Exit 1 when no message comes for this many seconds (default: wait on).",
)
@click.option(
    "--state",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File keeping the last chunk serial accepted, across restarts: a chunk whose "
    "serial is not above it is refused as replayed.",
)
@click.option(
    "--max-age",
    type=click.FloatRange(min=0, min_open=True),
    help="Refuse a chunk signed more than this many seconds before (or after) this "
    "host's clock, as qrng feed does (default: no clock check).",
)
@json_option("One JSON object per message (its verdict and the message) instead of a line.")
def subscribe_command(
    broker: str,
    topic: str,
    username: str | None,
    password_file: Path | None,
    tls_ca: Path | None,
    client_cert: Path | None,
    client_key: Path | None,
    verify: bool,
    pems: tuple[str, ...],
    keys_file: str | None,
    certificates: tuple[Path, ...],
    only: str | None,
    count: int | None,
    timeout: float | None,
    state: Path | None,
    max_age: float | None,
    as_json: bool,
) -> None:
    """Receive entropy chunks and beacon pulses, checking each; exit 1 on a bad one."""
    layout = _topics(topic)
    keys = pinned_keys(pems, keys_file)
    pinned = _read_certificates(certificates)
    if not verify and (keys is not None or pinned):
        raise click.UsageError("--public-key, --keys and --certificate take effect with --verify")
    if verify and only != "beacon" and keys is None:
        raise click.UsageError(
            "--verify needs the service's public key (--public-key or --keys) to check "
            "entropy chunks (or --only beacon)"
        )
    if verify and only != "entropy" and not pinned:
        raise click.UsageError(
            "--verify needs the beacon's certificate (--certificate) to check pulses "
            "(or --only entropy)"
        )
    verifier = Verifier(
        keys if verify else None,
        pinned if verify else None,
        last_serial=read_last_serial(state),
        max_age=max_age,
    )
    names = [
        name
        for name, kind in ((layout.entropy, "entropy"), (layout.pulse, "beacon"))
        if only in (None, kind)
    ]
    wait = DEFAULT_TIMEOUT if timeout is None else min(timeout, DEFAULT_TIMEOUT)
    config = _broker_config(broker, username, password_file, tls_ca, client_cert, client_key, wait)
    with Session(config) as session:
        session.subscribe(names)
        click.echo(f"subscribed to {', '.join(names)}", err=True)
        received = 0
        while count is None or received < count:
            message = session.receive(timeout)
            if message is None:
                assert timeout is not None
                so_far = f"{received} of {count}" if count is not None else str(received)
                raise _Failed(f"timeout: no message for {timeout:g} s ({so_far} received)")
            kind = layout.kind(message.topic)
            if kind is None:
                continue
            verdict = verifier.check(kind, message.payload)
            if not verdict.valid:
                raise _Failed(verdict.line())
            if state is not None and kind == "entropy":
                _save_state(state, verifier)
            click.echo(json.dumps(verdict.to_json()) if as_json else verdict.line())
            received += 1


def _save_state(path: Path, verifier: Verifier) -> None:
    """Record the chunk just accepted, before it is printed: a restart never takes it again."""
    assert verifier.last_serial is not None
    accepted = feed.Accepted(verifier.last_serial, verifier.last_completion_time or "")
    try:
        replace_file(path, feed.state_text(accepted).encode())
    except OSError as exc:
        raise _Failed(f"cannot write --state {path}: {exc.strerror}") from None


COMMANDS: list[click.Command] = [mqtt_group]
