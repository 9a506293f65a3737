"""``qrng mqtt publish`` and ``qrng mqtt subscribe`` run as users run them, between a real
``qrng serve`` (a pulse a second) and the real Mosquitto of this machine: every chunk
arrives and verifies, a tampered or replayed chunk and a forged pulse stop the subscriber
(exit 1, one line), a late subscriber gets the retained pulse; a private Mosquitto takes
the password from a file or the environment, over TLS and with a client certificate."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
from click.testing import CliRunner

from quantumrng.beacon import Pulse
from quantumrng.cli import cli
from quantumrng.client import Client
from quantumrng.mqtt import chunk_payload
from tests.cli.support import qrng
from tests.server.process import Server, free_port, run_server
from tests.test_mqtt import PrivateBroker, private_broker, system_broker, unique_topic

WAIT = 30.0  # seconds any one command may take here


@dataclass(frozen=True)
class Service:
    """A running ``qrng serve`` with a beacon, its public key and its beacon certificate."""

    server: Server
    public_key: Path
    certificate: Path
    key_id: str

    @property
    def url(self) -> str:
        return self.server.base_url

    def verify_flags(self) -> list[str]:
        return [
            "--verify",
            "--public-key",
            str(self.public_key),
            "--certificate",
            str(self.certificate),
        ]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("mqtt-service")
    with run_server(tmp, settings={"beacon_period": "1"}) as server:
        listed = httpx.get(server.base_url + "/api/v2/keys/public", timeout=5).json()["keys"][0]
        (tmp / "service.pem").write_text(listed["pem"])
        deadline = time.monotonic() + WAIT
        while (r := httpx.get(server.base_url + "/beacon/2.0/pulse/last", timeout=5)).status_code:
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        pulse = Pulse.from_json(r.json())
        cert = httpx.get(
            f"{server.base_url}/beacon/2.0/certificate/{pulse.certificate_id.hex()}", timeout=5
        )
        (tmp / "beacon.pem").write_text(cert.text)
        yield Service(server, tmp / "service.pem", tmp / "beacon.pem", listed["key_id"])


@pytest.fixture(scope="module")
def broker() -> str:
    return system_broker()


@pytest.fixture
def topic(broker: str) -> Iterator[str]:
    """A topic of the test's own; its retained pulse is cleared after."""
    name = unique_topic("cli")
    yield name
    publish_raw(broker, f"{name}/beacon/pulse", b"", retain=True)


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateBroker]:
    with private_broker(tmp_path_factory.mktemp("private-mosquitto")) as running:
        yield running


def publish_raw(url: str, name: str, payload: bytes, *, retain: bool = False) -> None:
    """Publish one message with paho alone (QoS 1, PUBACK awaited), as an attacker could."""
    host, port = url.removeprefix("mqtt://").split(":")
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.connect(host, int(port))
    client.loop_start()
    try:
        client.publish(name, payload, qos=1, retain=retain).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRNG_")}
    return {**env, **extra}


class Subscriber:
    """``qrng mqtt subscribe ARGS`` in the background, started once it has subscribed."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "quantumrng", "mqtt", "subscribe", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env or environment(),
        )
        assert self.proc.stderr is not None
        self.err = b""
        deadline = time.monotonic() + WAIT
        while b"subscribed to " not in self.err:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stderr], [], [], max(0.0, left))
            chunk = os.read(self.proc.stderr.fileno(), 4096) if ready else b""
            if not chunk:
                self.proc.kill()
                raise AssertionError(f"the subscriber did not subscribe: {self.err.decode()}")
            self.err += chunk

    def finish(self) -> tuple[int, str, str]:
        """Wait for it to exit: status, standard output, standard error."""
        try:
            out, err = self.proc.communicate(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return self.proc.returncode, out.decode(), (self.err + err).decode()


def publish(service: Service, broker: str, topic: str, *args: str) -> tuple[list[int], str]:
    """Run ``qrng mqtt publish``; the serials it published and its output (exit 0)."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "quantumrng", "mqtt", "publish", "--broker", broker),
            *("--topic", topic, "--url", service.url, "--interval", "0", *args),
        ],
        capture_output=True,
        env=environment(),
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode()
    return [int(s) for s in re.findall(r"^published entropy serial (\d+) ", out, re.M)], out


def signed_chunks(service: Service, n: int) -> list[dict[str, Any]]:
    with Client(service.url) as client:
        return [client.signed_bytes(16)[1] for _ in range(n)]


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if not line.startswith("subscribed to ")]
    assert len(lines) == 1, err
    return lines[0]


# --- chunks ---------------------------------------------------------------------------


def test_a_subscriber_receives_and_verifies_every_chunk_published(
    service: Service, broker: str, topic: str
) -> None:
    base = ["--broker", broker, "--topic", topic, "--timeout", str(WAIT)]
    sub = Subscriber(*base, *service.verify_flags(), "--only", "entropy", "--count", "6")
    serials, out = publish(service, broker, topic, "--count", "6", "--bytes", "48")
    status, lines, err = sub.finish()
    assert status == 0, err
    assert len(serials) == 6 and serials == sorted(set(serials))
    assert all(f"to {topic}/entropy" in line for line in out.splitlines() if "entropy" in line)
    assert lines.splitlines() == [
        f"entropy serial {s}: valid, signed by key {service.key_id}" for s in serials
    ]


def test_a_tampered_chunk_stops_the_subscriber_with_one_line(
    service: Service, broker: str, topic: str
) -> None:
    sub = Subscriber(
        "--broker", broker, "--topic", topic, "--count", "3", "--timeout", str(WAIT),
        *service.verify_flags(), "--only", "entropy",
    )  # fmt: skip
    good, victim = signed_chunks(service, 2)
    victim["result"]["data"] = "AAAAAAAAAAAAAAAAAAAAAA=="
    publish_raw(broker, f"{topic}/entropy", json.dumps(good).encode())
    publish_raw(broker, f"{topic}/entropy", json.dumps(victim).encode())
    status, out, err = sub.finish()
    assert status == 1
    assert out.splitlines() == [
        f"entropy serial {good['result']['serial']}: valid, signed by key {service.key_id}"
    ]
    serial = victim["result"]["serial"]
    assert error_line(err) == (
        f"qrng: error: invalid: entropy serial {serial}: the signature does not match the result"
    )


@pytest.mark.parametrize("which", ["the last one again", "an earlier one"])
def test_a_replayed_chunk_stops_the_subscriber_with_one_line(
    service: Service, broker: str, topic: str, which: str
) -> None:
    sub = Subscriber(
        "--broker", broker, "--topic", topic, "--count", "5", "--timeout", str(WAIT),
        *service.verify_flags(), "--only", "entropy",
    )  # fmt: skip
    first, second = signed_chunks(service, 2)
    replayed = second if which == "the last one again" else first
    for signed in (first, second, replayed):
        publish_raw(broker, f"{topic}/entropy", json.dumps(signed).encode())
    status, out, err = sub.finish()
    assert status == 1
    assert len(out.splitlines()) == 2
    line = error_line(err)
    s = replayed["result"]["serial"]
    assert line.startswith(f"qrng: error: invalid: entropy serial {s}: serial {s} ")
    assert "replayed" in line


def test_with_state_a_restarted_subscriber_refuses_a_chunk_it_took_before(
    service: Service, broker: str, topic: str, tmp_path: Path
) -> None:
    state = tmp_path / "mqtt.state"
    flags = ["--broker", broker, "--topic", topic, "--timeout", str(WAIT), "--only", "entropy"]
    flags += [*service.verify_flags(), "--state", str(state)]
    first, second = signed_chunks(service, 2)
    sub = Subscriber(*flags, "--count", "2")
    for signed in (first, second):
        publish_raw(broker, f"{topic}/entropy", json.dumps(signed).encode())
    status, _, err = sub.finish()
    assert status == 0, err
    assert json.loads(state.read_text())["serial"] == second["result"]["serial"]
    assert state.stat().st_mode & 0o777 == 0o600

    restarted = Subscriber(*flags, "--count", "1")
    publish_raw(broker, f"{topic}/entropy", json.dumps(first).encode())
    status, out, err = restarted.finish()
    assert status == 1 and out == ""
    s = first["result"]["serial"]
    assert error_line(err).startswith(
        f"qrng: error: invalid: entropy serial {s}: serial {s} is below"
    )
    assert json.loads(state.read_text())["serial"] == second["result"]["serial"]


def test_a_state_file_that_holds_no_serial_is_a_usage_error(
    broker: str, topic: str, tmp_path: Path
) -> None:
    state = tmp_path / "mqtt.state"
    state.write_text("not json")
    done = qrng(
        tmp_path, "mqtt", "subscribe", "--broker", broker, "--topic", topic,
        "--only", "entropy", "--state", str(state), "--timeout", "1",
    )  # fmt: skip
    assert done.returncode == 2
    assert "holds no serial" in done.stderr.decode()


def test_with_max_age_a_stale_chunk_is_refused(service: Service, broker: str, topic: str) -> None:
    (signed,) = signed_chunks(service, 1)
    time.sleep(1.5)
    sub = Subscriber(
        "--broker", broker, "--topic", topic, "--count", "1", "--timeout", str(WAIT),
        *service.verify_flags(), "--only", "entropy", "--max-age", "1",
    )  # fmt: skip
    publish_raw(broker, f"{topic}/entropy", json.dumps(signed).encode())
    status, out, err = sub.finish()
    assert status == 1 and out == ""
    assert "more than --max-age 1 s" in error_line(err)


def test_a_chunk_payload_saved_to_a_file_is_what_qrng_verify_checks(
    tmp_path: Path, service: Service
) -> None:
    (signed,) = signed_chunks(service, 1)
    saved = tmp_path / "chunk.json"
    saved.write_bytes(chunk_payload(signed))
    result = CliRunner().invoke(
        cli, ["verify", str(saved), "--public-key", str(service.public_key)]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"valid: serial {signed['result']['serial']}, signed by key ")


# --- pulses ---------------------------------------------------------------------------


def test_a_late_subscriber_gets_the_retained_pulse_and_verifies_it(
    service: Service, broker: str, topic: str
) -> None:
    _, out = publish(service, broker, topic, "--count", "1")
    published = re.findall(r"^published pulse (\d+)/(\d+) to (\S+) \(retained\)$", out, re.M)
    assert published, out
    chain, index, where = published[-1]
    assert where == f"{topic}/beacon/pulse"
    late = Subscriber(
        "--broker", broker, "--topic", topic, "--count", "1", "--timeout", "10", "--json",
        *service.verify_flags(),
    )  # fmt: skip
    status, lines, err = late.finish()
    assert status == 0, err
    (line,) = lines.splitlines()
    got = json.loads(line)
    assert (got["kind"], got["chain"], got["pulse"], got["verified"]) == (
        "pulse",
        int(chain),
        int(index),
        True,
    )
    assert Pulse.from_json(got["message"]).pulse_index == int(index)


def test_a_forged_pulse_stops_the_subscriber(service: Service, broker: str, topic: str) -> None:
    pulse = httpx.get(service.url + "/beacon/2.0/pulse/last", timeout=5).json()
    pulse["pulse"]["localRandomValue"] = "00" * 64
    publish_raw(broker, f"{topic}/beacon/pulse", json.dumps(pulse).encode(), retain=True)
    sub = Subscriber(
        "--broker", broker, "--topic", topic, "--count", "1", "--timeout", "10",
        "--verify", "--certificate", str(service.certificate), "--only", "beacon",
    )  # fmt: skip
    status, _, err = sub.finish()
    assert status == 1
    assert error_line(err).endswith(
        ": signature: signatureValue does not verify under the certificate"
    )


def test_with_the_beacon_off_the_publisher_says_so_once_and_publishes_chunks(
    tmp_path: Path, broker: str, topic: str
) -> None:
    with run_server(tmp_path, settings={"beacon_period": "0"}) as server:
        done = qrng(
            tmp_path, "mqtt", "publish", "--broker", broker, "--topic", topic,
            "--url", server.base_url, "--count", "3", "--interval", "0.6",
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    notes = done.stderr.decode().splitlines()
    assert len(notes) == 1 and notes[0].startswith("note: the service has no beacon pulse")
    out = done.stdout.decode().splitlines()
    assert len(out) == 3 and all(line.startswith("published entropy serial ") for line in out)


# --- failures and bad arguments ---------------------------------------------------------


def test_no_broker_a_silent_topic_and_a_broker_refusing_are_one_line_and_exit_1(
    tmp_path: Path, broker: str, topic: str, private: PrivateBroker
) -> None:
    port = free_port()
    nobody = qrng(
        tmp_path, "mqtt", "subscribe", "--broker", f"mqtt://127.0.0.1:{port}", "--topic", topic
    )
    assert nobody.returncode == 1
    assert nobody.stderr.decode() == (
        f"qrng: error: cannot connect to the broker mqtt://127.0.0.1:{port}: Connection refused\n"
    )
    silent = qrng(
        tmp_path, "mqtt", "subscribe", "--broker", broker, "--topic", topic,
        "--count", "2", "--timeout", "0.5",
    )  # fmt: skip
    assert silent.returncode == 1
    assert silent.stderr.decode().splitlines()[-1] == (
        "qrng: error: timeout: no message for 0.5 s (0 of 2 received)"
    )
    anonymous = qrng(tmp_path, "mqtt", "subscribe", "--broker", private.plain, "--topic", topic)
    assert anonymous.returncode == 1
    assert anonymous.stderr.decode() == (
        f"qrng: error: the broker {private.plain} refused the connection: Not authorized\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["subscribe", "--verify"], "--verify needs the service's public key"),
        (["subscribe", "--verify", "--only", "beacon"], "--verify needs the beacon's certificate"),
        (["subscribe", "--public-key", "{pem}"], "take effect with --verify"),
        (["subscribe", "--broker", "mqtt://u:hunter2secret@h"], "not in the broker URL"),
        (["subscribe", "--broker", "http://h"], "a broker URL is mqtt://"),
        (["subscribe", "--topic", "a/#"], "without the wildcards"),
        (["subscribe", "--password-file", "{pem}"], "--password-file needs --username"),
        (["subscribe", "--tls-ca", "{pem}"], "need an mqtts:// broker"),
        (["subscribe", "--password", "hunter2secret"], "No such option '--password'"),
        (["publish", "--bytes", "0"], "--bytes"),
    ],
)
def test_bad_arguments_are_a_usage_error(service: Service, args: list[str], message: str) -> None:
    command, *rest = [a.replace("{pem}", str(service.public_key)) for a in args]
    flags = {"--broker": "mqtt://127.0.0.1:1", "--topic": "t"}
    if command == "publish":
        flags["--url"] = service.url
    for name, value in flags.items():
        if name not in rest:
            rest += [name, value]
    result = CliRunner().invoke(cli, ["mqtt", command, *rest])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "hunter2secret" not in result.output


# --- a broker with a password, TLS and client certificates ------------------------------


def test_the_password_from_a_file_or_the_environment_over_plain_and_tls(
    service: Service, private: PrivateBroker, topic: str
) -> None:
    tls = [
        "--broker", private.tls, "--topic", topic, "--username", private.username,
        "--tls-ca", str(private.ca),
    ]  # fmt: skip
    sub = Subscriber(
        *tls, "--count", "2", "--timeout", str(WAIT), "--only", "entropy",
        *service.verify_flags(),
        env=environment(QRNG_MQTT_PASSWORD=private.password),
    )  # fmt: skip
    plain = ["--username", private.username, "--password-file", str(private.password_file)]
    serials, _ = publish(service, private.plain, topic, "--count", "2", *plain)
    status, out, err = sub.finish()
    assert status == 0, err
    assert [int(s) for s in re.findall(r"^entropy serial (\d+): valid", out, re.M)] == serials
    assert private.password not in out + err


def test_a_client_certificate_is_sent_when_the_broker_asks_for_one(
    tmp_path: Path, service: Service, private: PrivateBroker, topic: str
) -> None:
    login = ["--username", private.username, "--password-file", str(private.password_file)]
    tls = ["--broker", private.mutual, "--topic", topic, "--tls-ca", str(private.ca), *login]
    identity = ["--client-cert", str(private.client_cert), "--client-key", str(private.client_key)]
    with_certificate = qrng(
        tmp_path, "mqtt", "publish", *tls, *identity, "--url", service.url, "--count", "1",
        "--interval", "0",
    )  # fmt: skip
    assert with_certificate.returncode == 0, with_certificate.stderr
    without = qrng(tmp_path, "mqtt", "subscribe", *tls, "--timeout", "1")
    assert without.returncode == 1
    (line,) = without.stderr.decode().splitlines()
    assert line == (
        f"qrng: error: the broker {private.mutual} closed the connection before accepting it "
        "(does it ask for a client certificate? --client-cert, --client-key)"
    )


def test_a_wrong_password_is_refused_and_never_printed(
    tmp_path: Path, service: Service, private: PrivateBroker, topic: str
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("hunter2secret\n")
    wrong.chmod(0o600)
    done = qrng(
        tmp_path, "mqtt", "publish", "--broker", private.plain, "--topic", topic,
        "--username", private.username, "--password-file", str(wrong), "--url", service.url,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.decode() == (
        f"qrng: error: the broker {private.plain} refused the connection: Not authorized\n"
    )
    assert b"hunter2secret" not in done.stdout + done.stderr
    wrong.chmod(0o644)
    open_file = qrng(
        tmp_path, "mqtt", "publish", "--broker", private.plain, "--topic", topic,
        "--username", private.username, "--password-file", str(wrong), "--url", service.url,
    )  # fmt: skip
    assert open_file.returncode == 2
    assert b"chmod 600" in open_file.stderr and b"hunter2secret" not in open_file.stderr
