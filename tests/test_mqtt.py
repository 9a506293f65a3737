"""The MQTT pieces: broker URLs and topics, payloads, the verifier's verdicts (signatures,
serials that must increase, pulses that must not go back), the password's sources, and a
session against the real Mosquitto of this machine (and a private one with a password,
TLS and client certificates, in tmp_path)."""

from __future__ import annotations

import base64
import getpass
import json
import math
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from quantumrng.beacon import BeaconKey, Pulse, self_signed_certificate, sign
from quantumrng.errors import (
    AuthenticationError,
    ConfigError,
    InvalidRequest,
    Unavailable,
)
from quantumrng.mqtt import (
    Broker,
    BrokerConfig,
    Session,
    Verifier,
    chunk_payload,
    parse_broker,
    pulse_payload,
    read_password,
    topics,
)
from quantumrng.pool.memory import MemoryPool
from quantumrng.signed import PublicKey, canonical, key_id, parse_rfc3339, rfc3339
from quantumrng.transparency.store import MemoryLedger
from tests.test_beacon import T0, publisher, stored

SYSTEM_BROKER = ("127.0.0.1", 1883)
SYSTEM_CONFIG = "/etc/mosquitto/mosquitto.conf"
START_SECONDS = 10.0

# --- signed chunks and pulses made here -----------------------------------------------

SIGNER = Ed25519PrivateKey.generate()
KEY = PublicKey(SIGNER.public_key(), -math.inf)


def chunk(serial: int, data: bytes = b"\x01" * 16, signer: Ed25519PrivateKey = SIGNER) -> Any:
    """A signed object as the service makes it for GET /api/v2/bytes?format=base64."""
    result = {
        "method": "bytes",
        "parameters": {"n": len(data), "format": "base64", "mode": "drbg"},
        "data": base64.b64encode(data).decode(),
        "provenance": {"kind": "os"},
        "completion_time": rfc3339(time.time()),
        "serial": serial,
        "key_serial": serial,
        "hashed_api_key": "",
        "key_id": key_id(signer.public_key()),
    }
    signature = base64.b64encode(signer.sign(canonical(result))).decode()
    return {"result": result, "signature": signature, "algorithm": "Ed25519"}


def payload(document: object) -> bytes:
    return json.dumps(document).encode()


@pytest.fixture(scope="module")
def beacon_key() -> BeaconKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return BeaconKey(private, self_signed_certificate(private, "test beacon"))


@pytest.fixture(scope="module")
def chain(beacon_key: BeaconKey) -> list[Pulse]:
    store = MemoryLedger()
    beacon = publisher(store, MemoryPool(), beacon_key)
    for k in range(4):
        beacon.publish(T0 + k * 60_000)
    return stored(store)


# --- broker URLs and topics -----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected", "text"),
    [
        ("mqtt://broker.example", Broker("broker.example", 1883, False), "mqtt://broker.example:1883"),
        ("mqtts://broker.example", Broker("broker.example", 8883, True), "mqtts://broker.example:8883"),
        ("MQTT://127.0.0.1:1999/", Broker("127.0.0.1", 1999, False), "mqtt://127.0.0.1:1999"),
        ("mqtts://[::1]:8884", Broker("::1", 8884, True), "mqtts://[::1]:8884"),
    ],
)  # fmt: skip
def test_a_broker_url_gives_host_port_and_tls(url: str, expected: Broker, text: str) -> None:
    assert parse_broker(url) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    "url",
    [
        "http://broker",
        "broker:1883",
        "mqtt://",
        "mqtt://broker:0",
        "mqtt://broker:99999",
        "mqtt://broker/path",
        "mqtt://broker?x=1",
        "mqtt://user:hunter2secret@broker",
        "mqtt://hunter2secret@broker",
    ],
)
def test_a_broker_url_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_broker(url)
    assert "hunter2secret" not in refused.value.message
    assert "broker" in refused.value.message


def test_the_topic_layout_puts_chunks_and_the_pulse_under_the_root() -> None:
    layout = topics("qrng/site-1/")
    assert (layout.root, layout.entropy, layout.pulse) == (
        "qrng/site-1",
        "qrng/site-1/entropy",
        "qrng/site-1/beacon/pulse",
    )
    assert layout.kind("qrng/site-1/entropy") == "entropy"
    assert layout.kind("qrng/site-1/beacon/pulse") == "pulse"
    assert layout.kind("qrng/site-1/other") is None


@pytest.mark.parametrize("root", ["", "/", "a/+/b", "a/#", "$SYS/x", "a\0b", "x" * 70_000])
def test_a_topic_a_publisher_may_not_use_is_refused(root: str) -> None:
    with pytest.raises(InvalidRequest):
        topics(root)


# --- payloads -------------------------------------------------------------------------


def test_payloads_are_compact_json_of_the_signed_object_and_the_pulse_document(
    chain: list[Pulse],
) -> None:
    signed = chunk(7)
    body = chunk_payload(signed)
    assert json.loads(body) == signed and b" " not in body
    document = json.loads(pulse_payload(chain[1]))
    assert list(document) == ["pulse"]
    assert list(document["pulse"])[:3] == ["uri", "version", "cipherSuite"]
    assert Pulse.from_json(document) == chain[1]


# --- chunks ---------------------------------------------------------------------------


def test_signed_chunks_with_increasing_serials_are_valid_gaps_allowed() -> None:
    verifier = Verifier([KEY])
    lines = [verifier.check("entropy", payload(chunk(s))).line() for s in (3, 4, 9)]
    kid = KEY.key_id
    assert lines == [f"entropy serial {s}: valid, signed by key {kid}" for s in (3, 4, 9)]
    assert verifier.last_serial == 9


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda c: c["result"].update(data=base64.b64encode(b"\x02" * 16).decode()), "not match"),
        (lambda c: c["result"].update(serial=c["result"]["serial"] + 1), "does not match"),
        (lambda c: c.update(chunk(5, signer=Ed25519PrivateKey.generate())), "unknown key"),
        (lambda c: c.update(signature=base64.b64encode(bytes(64)).decode()), "does not match"),
    ],
)  # fmt: skip
def test_a_tampered_or_foreign_chunk_is_invalid(change: Any, reason: str) -> None:
    verifier = Verifier([KEY])
    tampered = chunk(5)
    change(tampered)
    verdict = verifier.check("entropy", payload(tampered))
    assert not verdict.valid and reason in verdict.reason
    assert verdict.line().startswith("invalid: entropy serial ")
    assert verifier.last_serial is None


def test_a_replayed_or_earlier_serial_is_invalid_and_a_refusal_changes_nothing() -> None:
    verifier = Verifier([KEY])
    first, second = chunk(10), chunk(11)
    assert verifier.check("entropy", payload(first)).valid
    assert verifier.check("entropy", payload(second)).valid
    again = verifier.check("entropy", payload(second))
    assert not again.valid
    assert again.line() == "invalid: entropy serial 11: serial 11 was received already (replayed)"
    back = verifier.check("entropy", payload(first))
    assert back.reason == "serial 10 is below the last one received, 11 (replayed or out of order)"
    forged = chunk(99)
    forged["result"]["data"] = base64.b64encode(b"\x03" * 16).decode()
    assert not verifier.check("entropy", payload(forged)).valid
    assert verifier.check("entropy", payload(chunk(12))).valid  # 99 was never accepted


def test_a_verifier_resumed_from_a_saved_serial_refuses_chunks_at_or_below_it() -> None:
    verifier = Verifier([KEY], last_serial=20)
    assert verifier.check("entropy", payload(chunk(20))).reason == (
        "serial 20 was received already (replayed)"
    )
    assert not verifier.check("entropy", payload(chunk(7))).valid
    accepted = chunk(21)
    assert verifier.check("entropy", payload(accepted)).valid
    assert verifier.last_serial == 21
    assert verifier.last_completion_time == accepted["result"]["completion_time"]


@pytest.mark.parametrize(
    ("skew", "valid"), [(-600.0, False), (-30.0, True), (30.0, True), (600.0, False)]
)
def test_with_a_max_age_a_chunk_signed_too_long_ago_or_ahead_is_refused(
    skew: float, valid: bool
) -> None:
    signed = chunk(5)
    now = parse_rfc3339(signed["result"]["completion_time"]) - skew
    verifier = Verifier([KEY], max_age=300.0, clock=lambda: now)
    verdict = verifier.check("entropy", payload(signed))
    assert verdict.valid == valid, verdict.reason
    if not valid:
        assert "--max-age 300 s" in verdict.reason
        assert verifier.last_serial is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=30), max_size=25))
def test_a_serial_is_accepted_exactly_when_above_every_serial_accepted_before(
    serials: list[int],
) -> None:
    verifier = Verifier([KEY])
    highest = 0
    for serial in serials:
        verdict = verifier.check("entropy", payload(chunk(serial)))
        assert verdict.valid == (serial > highest), (serial, highest)
        highest = max(highest, serial) if verdict.valid else highest


def test_without_keys_only_the_shape_and_the_order_are_checked() -> None:
    verifier = Verifier()
    unsigned = chunk(4)
    unsigned["signature"] = base64.b64encode(bytes(64)).decode()
    verdict = verifier.check("entropy", payload(unsigned))
    assert verdict.valid and not verdict.verified
    assert verdict.line() == "entropy serial 4: well-formed (signature not checked)"
    assert not verifier.check("entropy", payload(unsigned)).valid  # still a replay


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (None, "not a signed object"),
        (lambda c: c.pop("algorithm"), "not a signed object"),
        (lambda c: c.update(extra=1), "not a signed object"),
        (lambda c: c["result"].pop("serial"), "result must hold exactly"),
        (lambda c: c["result"].update(serial=0), "serial must be a positive integer"),
        (lambda c: c["result"].update(serial=True), "serial must be a positive integer"),
        (lambda c: c["result"].update(serial="3"), "serial must be a positive integer"),
        (lambda c: c.update(algorithm="RS256"), "algorithm must be Ed25519"),
        (lambda c: c.update(signature="c2ln"), "signature must be 64 bytes"),
        (lambda c: c.update(signature=7), "signature must be 64 bytes"),
        (lambda c: c["result"].update(data=[1, 2]), "data must be base64"),
    ],
)
def test_a_malformed_chunk_is_invalid_with_or_without_keys(change: Any, reason: str) -> None:
    document = chunk(2)
    if change is None:
        body = b"{not json"
    else:
        change(document)
        body = payload(document)
    for verifier in (Verifier(), Verifier([KEY])):
        verdict = verifier.check("entropy", body)
        assert not verdict.valid and reason in verdict.reason, verdict.reason


def test_a_verdict_as_json_carries_the_message_and_no_repr_shows_the_entropy() -> None:
    signed = chunk(6, data=b"\xaa" * 16)
    verdict = Verifier([KEY]).check("entropy", payload(signed))
    assert verdict.to_json() == {
        "kind": "entropy",
        "valid": True,
        "verified": True,
        "serial": 6,
        "key_id": KEY.key_id,
        "message": signed,
    }
    assert signed["result"]["data"] not in repr(verdict)


# --- pulses ---------------------------------------------------------------------------


def test_a_chain_of_pulses_under_the_pinned_certificate_is_valid(
    chain: list[Pulse], beacon_key: BeaconKey
) -> None:
    verifier = Verifier(certificates=[beacon_key.certificate])
    lines = [verifier.check("pulse", pulse_payload(p)).line() for p in chain]
    assert lines == [f"pulse 1/{i}: valid" for i in (1, 2, 3, 4)]
    again = verifier.check("pulse", pulse_payload(chain[-1]))
    assert again.valid and again.repeated and again.line() == "pulse 1/4: valid (repeated)"
    assert again.to_json()["repeated"] is True


def test_a_pulse_going_back_is_invalid(chain: list[Pulse], beacon_key: BeaconKey) -> None:
    verifier = Verifier(certificates=[beacon_key.certificate])
    assert verifier.check("pulse", pulse_payload(chain[2])).valid
    back = verifier.check("pulse", pulse_payload(chain[1]))
    assert back.line() == (
        "invalid: pulse 1/2: its index goes back: pulse 1/3 was received already (replayed)"
    )
    assert verifier.check("pulse", pulse_payload(chain[3])).valid  # after a gap: no link check


def test_an_older_chain_is_invalid_and_a_newer_one_starts_afresh(chain: list[Pulse]) -> None:
    verifier = Verifier()  # shape and order only: the chain index is changed unsigned
    assert verifier.check("pulse", pulse_payload(replace(chain[2], chain_index=2))).valid
    assert verifier.check("pulse", pulse_payload(replace(chain[0], chain_index=3))).valid
    old = verifier.check("pulse", pulse_payload(replace(chain[3], chain_index=2)))
    assert not old.valid and "its chain goes back" in old.reason


def test_a_forged_or_unpinned_pulse_is_invalid(chain: list[Pulse], beacon_key: BeaconKey) -> None:
    verifier = Verifier(certificates=[beacon_key.certificate])
    forged = replace(chain[1], local_random_value=bytes(64))
    verdict = verifier.check("pulse", pulse_payload(forged))
    assert verdict.reason == "signature: signatureValue does not verify under the certificate"
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = Verifier(certificates=[self_signed_certificate(private, "another beacon")])
    assert "not a pinned one" in other.check("pulse", pulse_payload(chain[1])).reason


def test_another_pulse_at_the_same_index_or_a_broken_link_is_invalid(
    chain: list[Pulse], beacon_key: BeaconKey
) -> None:
    verifier = Verifier(certificates=[beacon_key.certificate])
    assert verifier.check("pulse", pulse_payload(chain[1])).valid
    twin = sign(replace(chain[1], local_random_value=bytes(64)), beacon_key.private_key)
    assert (
        "another pulse with the same index" in verifier.check("pulse", pulse_payload(twin)).reason
    )
    values = list(chain[2].list_values)
    values[0] = replace(values[0], value=bytes(64))
    relinked = sign(replace(chain[2], list_values=tuple(values)), beacon_key.private_key)
    broken = verifier.check("pulse", pulse_payload(relinked))
    assert broken.reason == "link: its previous value is not pulse 1/2's outputValue"
    rerolled = sign(replace(chain[2], local_random_value=bytes(64)), beacon_key.private_key)
    assert verifier.check("pulse", pulse_payload(rerolled)).reason.startswith("precommitment: ")
    assert verifier.check("pulse", pulse_payload(chain[2])).valid


@pytest.mark.parametrize(
    "body",
    [b"[]", b'{"pulse": 1}', b'{"pulse": {}}', b'{"pulse": {"uri": "x"}, "more": 1}', b"\xff"],
)
def test_a_malformed_pulse_is_invalid(body: bytes, chain: list[Pulse]) -> None:
    verdict = Verifier().check("pulse", body)
    assert not verdict.valid and verdict.line().startswith("invalid: pulse: ")
    bare = json.dumps(chain[0].to_json()).encode()  # without the {"pulse": ...} wrapper
    assert not Verifier().check("pulse", bare).valid


# --- the password and the broker's configuration ----------------------------------------


def test_the_password_comes_from_an_owner_only_file_else_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text("s3cret pass\nignored\n")
    path.chmod(0o600)
    assert read_password(path, {"QRNG_MQTT_PASSWORD": "env"}) == "s3cret pass"
    assert read_password(None, {"QRNG_MQTT_PASSWORD": "env"}) == "env"
    assert read_password(None, {}) is None
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_password(path, {})


def test_the_broker_configuration_refuses_contradictions_and_hides_the_password() -> None:
    plain, tls = Broker("h", 1883, False), Broker("h", 8883, True)
    config = BrokerConfig(tls, "device", "hunter2secret")
    assert "hunter2secret" not in repr(config)
    with pytest.raises(InvalidRequest, match="needs a --username"):
        BrokerConfig(plain, None, "hunter2secret")
    with pytest.raises(InvalidRequest, match="need an mqtts://"):
        BrokerConfig(plain, tls_ca=Path("ca.pem"))
    with pytest.raises(InvalidRequest, match="go together"):
        BrokerConfig(tls, client_cert=Path("c.pem"))
    assert BrokerConfig(plain).ssl_context() is None


def test_without_paho_a_session_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)
    with pytest.raises(ConfigError, match=r"pip install 'quantumrng\[mqtt\]'"):
        Session(BrokerConfig(Broker("127.0.0.1", 1883, False)))


# --- brokers: the system's Mosquitto and a private one ---------------------------------


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def system_broker() -> str:
    """The URL of this machine's Mosquitto on 127.0.0.1:1883, started if it is down."""
    if not listening(*SYSTEM_BROKER):
        if shutil.which("mosquitto") is None:
            pytest.skip("mosquitto is not installed")
        subprocess.run(
            ["mosquitto", "-d", "-c", SYSTEM_CONFIG], capture_output=True, timeout=10, check=False
        )
        deadline = time.monotonic() + START_SECONDS
        while not listening(*SYSTEM_BROKER):
            if time.monotonic() > deadline:
                pytest.skip("the system's mosquitto does not start")
            time.sleep(0.1)
    return "mqtt://127.0.0.1:1883"


def unique_topic(what: str) -> str:
    return f"qrng-test/{what}/{uuid.uuid4().hex}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class PrivateBroker:
    """A Mosquitto of the test's own: a password on every listener, plain, TLS and
    TLS asking for a client certificate, all signed by ``ca``."""

    plain: str
    tls: str
    mutual: str
    username: str
    password: str
    ca: Path
    client_cert: Path
    client_key: Path
    password_file: Path


@contextmanager
def private_broker(tmp: Path) -> Iterator[PrivateBroker]:
    """Start a Mosquitto with its own config in ``tmp``; stop it after (skip if it cannot)."""
    import trustme

    if shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto is not installed")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    device = ca.issue_cert("qrng-device")
    files = {
        "ca.pem": ca.cert_pem.bytes(),
        "server.pem": b"".join(blob.bytes() for blob in server.cert_chain_pems),
        "server.key": server.private_key_pem.bytes(),
        "client.pem": device.cert_chain_pems[0].bytes(),
        "client.key": device.private_key_pem.bytes(),
    }
    for name, data in files.items():
        (tmp / name).write_bytes(data)
        (tmp / name).chmod(0o600)
    username, password = "device", f"pw-{uuid.uuid4().hex}"
    passwd = tmp / "passwd"
    made = subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwd), username, password],
        capture_output=True,
        timeout=10,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"mosquitto_passwd failed: {made.stderr.decode()[-200:]}")
    ports = [free_port() for _ in range(3)]
    tls = f"certfile {tmp / 'server.pem'}\nkeyfile {tmp / 'server.key'}\n"
    (tmp / "mosquitto.conf").write_text(
        f"user {getpass.getuser()}\npersistence false\nlog_dest stderr\n"
        f"allow_anonymous false\npassword_file {passwd}\n"
        f"listener {ports[0]} 127.0.0.1\n"
        f"listener {ports[1]} 127.0.0.1\n{tls}"
        f"listener {ports[2]} 127.0.0.1\n{tls}cafile {tmp / 'ca.pem'}\nrequire_certificate true\n"
    )
    log = tmp / "mosquitto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["mosquitto", "-c", str(tmp / "mosquitto.conf")], stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + START_SECONDS
        while not all(listening("127.0.0.1", p) for p in ports):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"a private mosquitto does not start: {log.read_text()[-300:]}")
            time.sleep(0.05)
        plain, secure, mutual = (
            f"mqtt://127.0.0.1:{ports[0]}",
            f"mqtts://127.0.0.1:{ports[1]}",
            f"mqtts://127.0.0.1:{ports[2]}",
        )
        password_file = tmp / "broker-password"
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        yield PrivateBroker(
            plain,
            secure,
            mutual,
            username,
            password,
            tmp / "ca.pem",
            tmp / "client.pem",
            tmp / "client.key",
            password_file,
        )
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateBroker]:
    with private_broker(tmp_path_factory.mktemp("mosquitto")) as broker:
        yield broker


def test_a_session_publishes_with_puback_and_receives_in_order() -> None:
    broker = parse_broker(system_broker())
    name = unique_topic("session")
    with Session(BrokerConfig(broker, timeout=5)) as sub, Session(BrokerConfig(broker)) as pub:
        sub.subscribe([name])
        for i in range(20):
            pub.publish(name, b"%d" % i)
        got = [sub.receive(5) for _ in range(20)]
        assert [m.payload if m else None for m in got] == [b"%d" % i for i in range(20)]
        assert sub.receive(0.2) is None
        assert "payload" not in repr(got[0])
        pub.publish(name + "/kept", b"last", retain=True)
        pub.publish(name + "/kept", b"", retain=True)  # clears the retained message


def test_a_session_to_no_broker_is_unavailable_in_one_line() -> None:
    config = BrokerConfig(Broker("127.0.0.1", free_port(), False), timeout=2)
    with pytest.raises(
        Unavailable, match=r"cannot connect to the broker mqtt://127\.0\.0\.1:"
    ) as e:
        Session(config).connect()
    assert "\n" not in e.value.message


def test_a_private_broker_takes_the_password_over_tls_and_refuses_a_wrong_one(
    private: PrivateBroker,
) -> None:
    good = BrokerConfig(
        parse_broker(private.tls), private.username, private.password, tls_ca=private.ca
    )
    name = unique_topic("tls")
    with Session(good) as session:
        session.subscribe([name])
        session.publish(name, b"over tls")
        message = session.receive(5)
        assert message is not None and message.payload == b"over tls"
    wrong = replace(good, password="not-the-password")
    with pytest.raises(AuthenticationError, match="refused the connection: Not authorized") as e:
        Session(wrong).connect()
    assert "not-the-password" not in e.value.message
    unknown_ca = replace(good, tls_ca=None)
    with pytest.raises(Unavailable, match="certificate verify failed"):
        Session(unknown_ca).connect()
