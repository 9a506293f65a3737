"""open_redis: every way Redis is run in production, against real servers; no command
sent twice; the password never in an error, a log, a repr or ``redacted``."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.exceptions
from redis.cluster import RedisCluster

import quantumrng.storage.redis as storage_redis
from quantumrng.config import Settings
from quantumrng.errors import ConfigError, Unavailable
from quantumrng.storage.errors import translate_errors
from quantumrng.storage.redis import (
    describe,
    open_redis,
    redacted,
    replicas_to_wait,
    run_command,
    run_script,
)
from tests.redis_servers import (
    ClusterServers,
    RedisServer,
    SentinelGroup,
    free_port,
    password_server,
    redis_cluster,
    redis_server,
    sentinel_group,
    tls_server,
)

SECRET = "s3cr3t p@ss/w:%"  # needs percent-encoding in a URL
QUOTED = "s3cr3t%20p%40ss%2Fw%3A%25"
WRONG = "wr0ng-pa55word"


def settings(url: str, **kwargs: Any) -> Settings:
    return Settings(redis_url=url, **kwargs)


def assert_hidden(*texts: object) -> None:
    """No text shows the password, raw or percent-encoded."""
    for text in texts:
        for secret in (SECRET, QUOTED, WRONG, "s3cr3t"):
            assert secret not in str(text)


def failure(client: Any, caplog: pytest.LogCaptureFixture) -> Unavailable:
    """The error a command raises through ``translate_errors``; checks nothing leaked."""
    caplog.set_level(logging.DEBUG)
    with pytest.raises(Unavailable) as info, translate_errors("the test store"):
        client.ping()
    exc = info.value
    assert_hidden(exc, repr(exc), exc.__context__, caplog.text, repr(client))
    return exc


@pytest.fixture(scope="module")
def secured() -> Iterator[RedisServer]:
    with password_server(SECRET, persistent=False, unix_socket=True) as server:
        admin = server.client()
        admin.acl_setuser(
            "alice", enabled=True, passwords=[f"+{SECRET}"], keys="*", commands=["+@all"]
        )
        admin.close()
        yield server


@pytest.fixture(scope="module")
def tls() -> Iterator[RedisServer]:
    with tls_server(client_certs=True, password=SECRET) as server:
        yield server


@pytest.fixture(scope="module")
def sentinels() -> Iterator[SentinelGroup]:
    with sentinel_group("qrng-store", password=SECRET) as group:
        yield group


@pytest.fixture(scope="module")
def tls_sentinels() -> Iterator[SentinelGroup]:
    with sentinel_group("qrng-tls", password=SECRET, tls=True) as group:
        yield group


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterServers]:
    with redis_cluster(password=SECRET) as servers:
        yield servers


# --- configuration: a bad URL or contradicting settings is a ConfigError without the password


@pytest.mark.parametrize(
    ("url", "extra"),
    [
        (f"http://:{QUOTED}@db:6379/0", {}),
        (f"redis://:{QUOTED}@db:port/0", {}),
        (f"redis://:{QUOTED}@db:6379/zero", {}),
        (f"redis+sentinel://:{QUOTED}@s1:26379,s2:26379", {}),
        (f"redis+sentinel://:{QUOTED}@s1:26379/m/one", {}),
        (f"redis+sentinel://:{QUOTED}@s1:26379/m/0/x", {}),
        (f"redis+sentinel://:{QUOTED}@s1:x,s2/m", {}),
        (f"redis+sentinel://:{QUOTED}@s1:26379/m", {"redis_cluster": True}),
        (
            f"redis+sentinel://:{QUOTED}@s1:26379/m",
            {"redis_sentinels": "s1:26379", "redis_master": "m"},
        ),
        (f"unix://:{QUOTED}@/tmp/r.sock", {"redis_sentinels": "s:1", "redis_master": "m"}),
        (f"redis://:{QUOTED}@db:6379/0", {"redis_sentinels": "s:1,,s:2", "redis_master": "m"}),
        (f"redis://:{QUOTED}@db:6379/0", {"redis_sentinels": "u:p@s:1", "redis_master": "m"}),
        (f"redis://:{QUOTED}@db:6379/3", {"redis_cluster": True}),
        (f"unix://:{QUOTED}@/tmp/r.sock", {"redis_cluster": True}),
    ],
)
def test_bad_urls_and_contradicting_settings_are_config_errors_without_the_password(
    url: str, extra: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError) as info:
        open_redis(settings(url, **extra))
    assert_hidden(info.value, repr(info.value))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://alice:{QUOTED}@db.example:6380/2", "redis://db.example:6380/2"),
        (f"rediss://:{QUOTED}@db.example/0", "rediss://db.example/0"),
        (f"unix://:{QUOTED}@/run/redis.sock?db=1&password={QUOTED}", "unix:///run/redis.sock"),
        (f"redis://db:6379/0?password={QUOTED}", "redis://db:6379/0"),
        (f"redis+sentinel://u:{QUOTED}@s1:1,s2:2/qrng/1", "redis+sentinel://s1:1,s2:2/qrng/1"),
        ("redis://[::1:6379/0", "?"),
    ],
)
def test_redacted_drops_user_password_and_query(url: str, shown: str) -> None:
    assert redacted(url) == shown


@pytest.mark.parametrize(
    ("url", "extra", "shown"),
    [
        (f"redis://u:{QUOTED}@db:6379/2", {}, "redis://db:6379/2"),
        (f"redis://:{QUOTED}@db:7000/0", {"redis_cluster": True}, "redis://db:7000/0 (cluster)"),
        (
            f"rediss://u:{QUOTED}@ignored:1/3",
            {"redis_sentinels": "s1:26379, s2", "redis_master": "qrng"},
            "redis+sentinel://s1:26379,s2:26379/qrng/3 (TLS)",
        ),
        (f"redis+sentinel://:{QUOTED}@s1:1/qrng", {}, "redis+sentinel://s1:1/qrng"),
    ],
)
def test_describe_names_the_servers_without_credentials(
    url: str, extra: dict[str, Any], shown: str
) -> None:
    assert describe(settings(url, **extra)) == shown


# --- a stand-alone server: passwords, users, unix sockets, no command sent twice


def test_a_percent_encoded_password_in_the_url_opens_a_protected_server(
    secured: RedisServer,
) -> None:
    client = open_redis(settings(f"redis://:{QUOTED}@127.0.0.1:{secured.port}/0"))
    assert client.ping()
    assert_hidden(repr(client), repr(client.connection_pool))
    client.close()


def test_a_user_and_password_in_the_url_log_in_as_that_acl_user(secured: RedisServer) -> None:
    client = open_redis(settings(f"redis://alice:{QUOTED}@127.0.0.1:{secured.port}/0"))
    assert client.acl_whoami() == "alice"
    client.close()


def test_a_unix_socket_url_with_a_password_opens_the_server(secured: RedisServer) -> None:
    client = open_redis(settings(f"unix://:{QUOTED}@{secured.socket_path}?db=1"))
    client.set("k", b"v")
    assert secured.client(db=1).get("k") == b"v"
    client.close()


@pytest.mark.parametrize("auth", ["", f":{WRONG}@", f"alice:{WRONG}@", f"bob:{QUOTED}@"])
def test_a_missing_or_wrong_password_is_unavailable_without_any_password(
    secured: RedisServer, auth: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = open_redis(settings(f"redis://{auth}127.0.0.1:{secured.port}/0"))
    exc = failure(client, caplog)
    assert type(exc.__context__).__name__ in ("AuthenticationError", "ResponseError")
    client.close()


def test_an_unreachable_host_is_unavailable_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = open_redis(settings(f"redis://:{QUOTED}@127.0.0.1:{free_port()}/0"))
    assert "ConnectionError" in str(failure(client, caplog))
    client.close()


def commands(data: bytes) -> list[bytes]:
    """The command names in ``data``, a sequence of RESP arrays of bulk strings."""
    names, lines = [], data.split(b"\r\n")
    for i, line in enumerate(lines):
        if line.startswith(b"*") and i + 2 < len(lines):
            names.append(lines[i + 2].upper())
    return names


class LostReplies:
    """A server that answers every command (``+OK``, or a ``HELLO`` map) but ``lost``,
    after which it closes the connection without a reply, counting the ``lost`` ones."""

    def __init__(self, lost: bytes) -> None:
        self.lost = lost
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2.0)
                self.converse(conn)

    def converse(self, conn: socket.socket) -> None:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            names = commands(data)
            if self.lost in names:
                self.received += names.count(self.lost)
                return
            hello = b"%1\r\n$5\r\nproto\r\n:3\r\n"  # RESP3's handshake reply
            conn.sendall(b"".join(hello if n == b"HELLO" else b"+OK\r\n" for n in names))

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5.0)
        self.sock.close()


def test_a_command_whose_reply_is_lost_is_sent_once() -> None:
    server = LostReplies(b"INCRBY")
    client = open_redis(settings(f"redis://127.0.0.1:{server.port}/0"))
    try:
        with pytest.raises(Unavailable), translate_errors("the test store"):
            client.incr("counter")
        assert server.received == 1
    finally:
        client.close()
        server.close()


@pytest.mark.slow
def test_every_client_is_built_without_retries(
    sentinels: SentinelGroup, cluster: ClusterServers
) -> None:
    plain = open_redis(settings("redis://127.0.0.1:1/0"))
    master = open_redis(settings(sentinels.url()))
    nodes = open_redis(settings(cluster.url, redis_cluster=True))
    for client in (plain, master):
        assert client.connection_pool.connection_kwargs["retry"].get_retries() == 0
    assert nodes.retry.get_retries() == 0
    for node in nodes.get_nodes():
        assert node.redis_connection.connection_pool.connection_kwargs["retry"].get_retries() == 0
    for client in (plain, master, nodes):
        client.close()


# --- TLS


def tls_settings(server: RedisServer, host: str = "127.0.0.1", **extra: Any) -> Settings:
    assert server.tls is not None
    files: dict[str, Path | None] = {
        "redis_ca_file": server.tls.ca,
        "redis_cert_file": server.tls.client_cert,
        "redis_key_file": server.tls.client_key,
    }
    return settings(f"rediss://:{QUOTED}@{host}:{server.port}/0", **(files | extra))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_mutual_tls_verified_against_the_ca_file_opens_the_server(
    tls: RedisServer, host: str
) -> None:
    client = open_redis(tls_settings(tls, host))
    assert client.ping()
    client.set("tls", b"yes")
    assert_hidden(repr(client))
    client.close()


@pytest.mark.parametrize(
    "change",
    [
        {"redis_ca_file": None},  # the system CAs do not know the test CA
        {"redis_cert_file": None, "redis_key_file": None},  # no client certificate
        "wrong-host",  # the certificate names 127.0.0.1 and localhost only
    ],
    ids=["unknown-ca", "no-client-cert", "wrong-host"],
)
def test_a_tls_failure_is_unavailable_without_the_password(
    tls: RedisServer, change: dict[str, Any] | str, caplog: pytest.LogCaptureFixture
) -> None:
    if change == "wrong-host":
        base = tls_settings(tls, "127.0.0.2")
    else:
        assert isinstance(change, dict)
        base = tls_settings(tls, **change)
    client = open_redis(base)
    failure(client, caplog)
    client.close()


def test_a_plain_connection_to_a_tls_port_fails_closed(
    tls: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = open_redis(settings(f"redis://:{QUOTED}@127.0.0.1:{tls.port}/0"))
    failure(client, caplog)
    client.close()


# --- Sentinel


@pytest.mark.slow
def test_a_sentinel_url_reaches_the_master_with_its_password_and_db(
    sentinels: SentinelGroup,
) -> None:
    client = open_redis(settings(sentinels.url(db=2)))
    client.set("via-url", b"1")
    assert sentinels.current_master().client(db=2).get("via-url") == b"1"
    assert replicas_to_wait(client) == 1
    assert_hidden(repr(client), repr(client.connection_pool))
    client.close()


@pytest.mark.slow
def test_sentinel_settings_beside_a_plain_url_reach_the_master(sentinels: SentinelGroup) -> None:
    client = open_redis(
        settings(
            f"redis://:{QUOTED}@ignored.invalid:1/3",
            redis_sentinels=sentinels.sentinel_addresses,
            redis_master=sentinels.master_name,
        )
    )
    client.set("via-settings", b"1")
    assert sentinels.current_master().client(db=3).get("via-settings") == b"1"
    client.close()


@pytest.mark.slow
def test_sentinel_settings_beside_a_rediss_url_reach_the_master_over_verified_tls(
    tls_sentinels: SentinelGroup, caplog: pytest.LogCaptureFixture
) -> None:
    assert tls_sentinels.tls is not None
    common: dict[str, Any] = {
        "redis_sentinels": tls_sentinels.sentinel_addresses,
        "redis_master": tls_sentinels.master_name,
    }
    url = f"rediss://:{QUOTED}@ignored.invalid:1/1"
    client = open_redis(settings(url, redis_ca_file=tls_sentinels.tls.ca, **common))
    assert run_command(client, "SET", "via-tls", b"1")
    assert tls_sentinels.current_master().client(db=1).get("via-tls") == b"1"
    assert tls_sentinels.current_replica().client(db=1).get("via-tls") == b"1"
    client.close()
    unverified = open_redis(settings(url, **common))  # the system CAs do not know the test CA
    failure(unverified, caplog)
    unverified.close()


@pytest.mark.slow
def test_an_unknown_master_name_is_unavailable(
    sentinels: SentinelGroup, caplog: pytest.LogCaptureFixture
) -> None:
    url = sentinels.url().replace("/qrng-store/", "/no-such-master/")
    client = open_redis(settings(url))
    assert "MasterNotFoundError" in str(failure(client, caplog))
    client.close()


def test_unreachable_sentinels_are_unavailable_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hosts = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    for url, extra in [
        (f"redis+sentinel://:{QUOTED}@{hosts}/qrng", {}),
        (f"redis://:{QUOTED}@x:1/0", {"redis_sentinels": hosts, "redis_master": "qrng"}),
    ]:
        client = open_redis(settings(url, **extra))
        failure(client, caplog)
        client.close()


@pytest.mark.slow
def test_a_wrong_master_password_behind_sentinels_is_unavailable(
    sentinels: SentinelGroup, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis+sentinel://:{WRONG}@{sentinels.sentinel_addresses}/{sentinels.master_name}"
    client = open_redis(settings(url))
    failure(client, caplog)
    client.close()


@pytest.mark.slow
def test_a_sentinel_write_waits_for_a_replica(sentinels: SentinelGroup) -> None:
    client = open_redis(settings(sentinels.url()))
    script = client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    replica = sentinels.current_replica().client()
    client.script_flush()  # NOSCRIPT: loaded, then run once
    assert run_script(client, script, ["{t}:n"], [5]) == 5
    assert replica.get("{t}:n") == b"5"  # acknowledged by the replica before the reply
    assert run_script(client, script, ["{t}:n"], [2]) == 7
    assert run_command(client, "SET", "{t}:r", b"record")
    assert replica.get("{t}:r") == b"record"
    assert run_command(client, "DEL", "{t}:r") == 1
    assert replica.get("{t}:r") is None
    client.close()


def test_without_sentinel_a_script_or_command_runs_once_without_wait(
    secured: RedisServer,
) -> None:
    client = open_redis(settings(f"redis://:{QUOTED}@127.0.0.1:{secured.port}/4"))
    script = client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert replicas_to_wait(client) == 0
    assert run_script(client, script, ["{u}:n"], [3]) == 3
    assert run_command(client, "SET", "{u}:r", b"x")
    assert secured.client(db=4).mget("{u}:n", "{u}:r") == [b"3", b"x"]
    client.close()


def test_a_write_no_replica_acknowledged_is_unavailable_and_its_reply_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(storage_redis, "replicas_to_wait", lambda client: 1)
    monkeypatch.setattr(storage_redis, "REPLICA_WAIT_MS", 50)
    with redis_server(persistent=False) as server:
        client = open_redis(settings(server.url))
        script = client.register_script("return redis.call('INCR', KEYS[1])")
        with pytest.raises(Unavailable, match="no replica"):
            run_script(client, script, ["{t}:n"], [])
        with pytest.raises(Unavailable, match="no replica"):
            run_command(client, "SET", "{t}:r", b"x")
        assert server.client().mget("{t}:n", "{t}:r") == [b"1", b"x"]  # they ran, unconfirmed
        client.close()


# --- Cluster


@pytest.mark.slow
def test_a_cluster_node_url_with_a_password_opens_the_whole_cluster(
    cluster: ClusterServers,
) -> None:
    client = open_redis(settings(cluster.nodes[1].url, redis_cluster=True))
    assert isinstance(client, RedisCluster)
    assert_hidden(repr(client), *(repr(n) for n in client.get_nodes()))
    assert {n.port for n in client.get_primaries()} == {n.port for n in cluster.nodes}
    assert replicas_to_wait(client) == 0
    client.close()


@pytest.mark.slow
def test_a_script_reaches_the_node_of_its_hash_tag_with_keys_built_from_argv(
    cluster: ClusterServers,
) -> None:
    client = open_redis(settings(cluster.url, redis_cluster=True))
    script = client.register_script(
        "redis.call('SET', ARGV[1] .. ':other', ARGV[2]); return redis.call('INCR', KEYS[1])"
    )
    tags = [f"{{qrng-{i}}}" for i in range(12)]
    for tag in tags:
        assert run_script(client, script, [f"{tag}:seq"], [tag, tag]) == 1
    homes = {client.keyslot(f"{t}:seq") for t in tags}
    assert len({client.nodes_manager.get_node_from_slot(s).port for s in homes}) == 3
    for tag in tags:
        assert client.get(f"{tag}:other") == tag.encode()
    client.close()


@pytest.mark.slow
def test_a_wrong_cluster_password_is_unavailable_without_any_password(
    cluster: ClusterServers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(Unavailable) as info:
        open_redis(
            settings(f"redis://:{WRONG}@127.0.0.1:{cluster.nodes[0].port}/0", redis_cluster=True)
        )
    assert_hidden(info.value, repr(info.value), info.value.__context__, caplog.text)


def test_an_unreachable_cluster_is_unavailable_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(Unavailable) as info:
        open_redis(settings(f"redis://:{QUOTED}@127.0.0.1:{free_port()}/0", redis_cluster=True))
    assert_hidden(info.value, repr(info.value), info.value.__context__, caplog.text)


def test_cluster_only_errors_are_unavailable_too() -> None:
    with pytest.raises(Unavailable) as info, translate_errors("the test store"):
        raise redis.exceptions.SlotNotCoveredError(f"slot 7 of redis://:{SECRET}@x")
    assert str(info.value) == "the test store failed: SlotNotCoveredError"


@pytest.mark.slow
def test_a_restarted_cluster_is_used_again_without_reopening_the_client() -> None:
    with redis_cluster(persistent=True) as servers:
        client = open_redis(settings(servers.url, redis_cluster=True))
        tags = [f"{{r{i}}}" for i in range(6)]
        for tag in tags:
            client.set(f"{tag}:k", tag)
        for node in servers.nodes:
            node.stop()
        with pytest.raises(Unavailable), translate_errors("the test store"):
            client.get(f"{tags[0]}:k")
        for node in servers.nodes:
            node.start()
        deadline = time.monotonic() + 30
        while not servers.ok() and time.monotonic() < deadline:
            time.sleep(0.1)
        with translate_errors("the test store"):
            assert [client.get(f"{t}:k") for t in tags] == [t.encode() for t in tags]
        client.close()
