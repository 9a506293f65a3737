"""Real Redis servers for the tests, on free loopback ports, started and stopped here.

Every helper is a context manager that starts its ``redis-server`` processes
(never daemonized: the test owns each pid), waits (bounded) until they answer,
yields a handle and, on exit, even after a failure, stops the processes
(SIGTERM, then SIGKILL) and removes their directory. A test that needs
Redis server binaries calls :func:`require_redis_server` (the helpers do) and
is skipped, with the reason, only when ``redis-server`` is not installed.

Public names (stable):

- :func:`require_redis_server` — skip unless ``redis-server`` is on ``PATH``.
- :func:`free_port` — a free loopback port whose ``+10000`` (cluster bus) is free too.
- :class:`RedisServer` — one process: ``port``, ``url``, ``address``,
  ``client()``, ``stop()``, ``kill()`` (SIGKILL), ``start()`` (same port, same
  directory, so a persistent server keeps its data), ``restart(crash=False)``,
  ``running``, ``info(section)``, ``log`` (its log file), ``dir``.
- :func:`redis_server` — a plain server; ``persistent=True`` (the default)
  runs ``appendonly yes`` + ``appendfsync always``; ``password=``,
  ``unix_socket=True`` (then ``socket_path``), ``options={...}`` for more.
- :func:`persistent_server` — :func:`redis_server` with persistence, named for it.
- :func:`password_server` — a server with ``requirepass``.
- :func:`tls_server` — a TLS-only server (``tls-port``, plain port 0) with a
  throwaway CA; ``server.tls`` is a :class:`TlsFiles` (CA, server and client
  certificate and key; :func:`make_tls_files` makes them); ``client_certs=True``
  requires a client certificate.
- :func:`sentinel_group` — a master, one replica and three sentinels watching
  ``master_name``: a :class:`SentinelGroup` with ``url()``
  (``redis+sentinel://...``), ``sentinel_addresses`` (``"h:p,h:p,h:p"``),
  ``master_address()``, ``current_master()``, ``current_replica()``,
  ``settled()``/``wait_settled()``, ``failover()`` (``SENTINEL
  FAILOVER``, waits until every sentinel and both servers agree); ``password=``,
  ``tls=True`` (TLS-only servers, ``group.tls``; sentinels answer on plain ports).
- :func:`redis_cluster` — three masters of a real Redis Cluster, slots
  assigned by ``redis-cli --cluster create``, ``cluster_state:ok``: a
  :class:`ClusterServers` with ``url`` (any node), ``nodes``, ``ok()``; ``password=``.

A process that will not start raises ``RuntimeError`` with the tail of its log
(after at most ``START_TIMEOUT`` seconds; a topology that will not settle after
``TOPOLOGY_TIMEOUT``), once every process already started is stopped.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

__all__ = [
    "ClusterServers",
    "RedisServer",
    "SentinelGroup",
    "TlsFiles",
    "free_port",
    "password_server",
    "persistent_server",
    "redis_cluster",
    "redis_server",
    "require_redis_server",
    "sentinel_group",
    "tls_server",
]

HOST = "127.0.0.1"
START_TIMEOUT = 15.0  # seconds for a process to answer PING
STOP_TIMEOUT = 5.0  # seconds after SIGTERM before SIGKILL
TOPOLOGY_TIMEOUT = 30.0  # seconds for replication, sentinels or a cluster to settle
PERSISTENCE = {"appendonly": "yes", "appendfsync": "always"}


def require_redis_server() -> str:
    """Return the path of ``redis-server``, or skip the test saying it is missing."""
    path = shutil.which("redis-server")
    if path is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    return path


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as redis-server binds
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


_taken: set[int] = set()


def free_port() -> int:
    """A loopback port that is free now, as is ``port + 10000`` (a cluster node's bus)."""
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randrange(20000, 55000)
        if port not in _taken and _port_free(port) and _port_free(port + 10000):
            _taken.add(port)
            return port
    raise RuntimeError("no free loopback port")


class Exited(RuntimeError):
    """The process ended while we waited for it."""


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exited:
            raise
        except Exception:  # not up yet: tried again until the deadline
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA and the certificates it issued, as PEM files."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """Issue a CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    import trustme

    ca = trustme.CA()
    server = ca.issue_cert(HOST, "localhost")
    client = ca.issue_cert("qrng-client@example.org")
    files = TlsFiles(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    ca.cert_pem.write_to_path(str(files.ca))
    server.cert_chain_pems[0].write_to_path(str(files.server_cert))
    server.private_key_pem.write_to_path(str(files.server_key))
    client.cert_chain_pems[0].write_to_path(str(files.client_cert))
    client.private_key_pem.write_to_path(str(files.client_key))
    for path in (files.server_key, files.client_key):
        path.chmod(0o600)
    return files


@dataclass
class RedisServer:
    """One ``redis-server`` process (a server, a cluster node or a sentinel) we own."""

    port: int
    dir: Path
    options: dict[str, str]
    password: str | None = None
    tls: TlsFiles | None = None
    sentinel: bool = False
    socket_path: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    host = HOST

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def conf(self) -> Path:
        return self.dir / ("sentinel.conf" if self.sentinel else "redis.conf")

    @property
    def log(self) -> Path:
        return self.dir / "redis.log"

    @property
    def url(self) -> str:
        """``redis://`` (``rediss://`` with TLS) URL, with the password if any, db 0."""
        scheme = "rediss" if self.tls else "redis"
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"{scheme}://{auth}{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self, **kwargs: Any) -> Any:
        """A plain redis-py client of this process (TLS with the test CA and client cert)."""
        import redis

        extra: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 2.0}
        if self.tls is not None:
            extra.update(
                ssl=True,
                ssl_ca_certs=str(self.tls.ca),
                ssl_certfile=str(self.tls.client_cert),
                ssl_keyfile=str(self.tls.client_key),
            )
        extra.update(kwargs)
        return redis.Redis(host=self.host, port=self.port, password=self.password, **extra)

    def _write_conf(self) -> None:
        lines = [f"bind {self.host}", "protected-mode no", f"dir {self.dir}", f"logfile {self.log}"]
        lines += [f"{key} {value}" for key, value in self.options.items()]
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        """Start the process (again) on the same port and directory; wait until it answers."""
        if self.running:
            return
        if not self.conf.exists():
            self._write_conf()
        cmd = [require_redis_server(), str(self.conf)]
        if self.sentinel:
            cmd.append("--sentinel")
        self.process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            _wait(self._answers, START_TIMEOUT, f"redis-server on port {self.port}")
        except RuntimeError as exc:
            if self.process is not None and self.process.poll() is None:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)
            tail = self._log_tail()
            self.kill()
            raise RuntimeError(f"redis-server on port {self.port}: {exc}\n{tail}") from None

    def _answers(self) -> bool:
        if not self.running:
            raise Exited("it exited")
        client = self.client(socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def _log_tail(self) -> str:
        stderr = b""
        if self.process is not None and self.process.stderr is not None:
            with contextlib.suppress(Exception):
                stderr = self.process.stderr.read() or b""
        try:
            log = self.log.read_text(errors="replace").splitlines()[-20:]
        except OSError:
            log = []
        return "\n".join(log) + stderr.decode(errors="replace")

    def stop(self) -> None:
        """SIGTERM (a clean shutdown: the AOF is flushed), SIGKILL after STOP_TIMEOUT."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed beyond what ``appendfsync`` already wrote."""
        self._end(signal.SIGKILL)

    def _end(self, sig: signal.Signals) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
        if process.stderr is not None:
            process.stderr.close()
        _wait(lambda: _port_free(self.port), STOP_TIMEOUT, f"port {self.port} to be free")

    def restart(self, *, crash: bool = False) -> None:
        """Stop (``crash``: SIGKILL) and start again on the same port and data."""
        if crash:
            self.kill()
        else:
            self.stop()
        self.start()

    def info(self, section: str = "") -> dict[str, Any]:
        client = self.client()
        try:
            return dict(client.info(section) if section else client.info())
        finally:
            client.close()


@contextlib.contextmanager
def _base_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="qrng-redis-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _new_server(
    base: Path,
    stack: contextlib.ExitStack,
    options: Mapping[str, str],
    *,
    password: str | None = None,
    tls: TlsFiles | None = None,
    sentinel: bool = False,
    unix_socket: bool = False,
) -> RedisServer:
    port = free_port()
    directory = base / str(port)
    directory.mkdir()
    opts = {"port": str(port)}
    if not sentinel:
        opts["save"] = '""'
    socket_path = None
    if unix_socket:
        socket_path = directory / "redis.sock"
        opts |= {"unixsocket": str(socket_path), "unixsocketperm": "700"}
    if password is not None and not sentinel:
        opts |= {"requirepass": _quoted(password), "masterauth": _quoted(password)}
    if tls is not None:
        opts |= {
            "port": "0",
            "tls-port": str(port),
            "tls-cert-file": str(tls.server_cert),
            "tls-key-file": str(tls.server_key),
            "tls-ca-cert-file": str(tls.ca),
            "tls-auth-clients": "no",
        }
    opts |= dict(options)
    server = RedisServer(
        port=port,
        dir=directory,
        options=opts,
        password=None if sentinel else password,
        tls=tls,
        sentinel=sentinel,
        socket_path=socket_path,
    )
    stack.callback(server.kill)
    server.start()
    return server


def _quoted(value: str) -> str:
    """A config-file string argument (redis.conf accepts C-style quoting)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@contextlib.contextmanager
def redis_server(
    *,
    persistent: bool = True,
    password: str | None = None,
    unix_socket: bool = False,
    options: Mapping[str, str] | None = None,
) -> Iterator[RedisServer]:
    """A stand-alone server; ``persistent``: AOF with an fsync after every write."""
    require_redis_server()
    opts = dict(PERSISTENCE if persistent else {"appendonly": "no"}) | dict(options or {})
    with _base_dir() as base, contextlib.ExitStack() as stack:
        yield _new_server(base, stack, opts, password=password, unix_socket=unix_socket)


def persistent_server(**kwargs: Any) -> contextlib.AbstractContextManager[RedisServer]:
    """A stand-alone server with ``appendonly yes`` and ``appendfsync always``."""
    return redis_server(persistent=True, **kwargs)


def password_server(
    password: str = "s3cr3t p@ss/wörd:%", **kwargs: Any
) -> contextlib.AbstractContextManager[RedisServer]:
    """A stand-alone server with ``requirepass`` (default: one that needs URL quoting)."""
    return redis_server(password=password, **kwargs)


@contextlib.contextmanager
def tls_server(
    *,
    client_certs: bool = False,
    password: str | None = None,
    persistent: bool = False,
) -> Iterator[RedisServer]:
    """A TLS-only server with a throwaway CA (``server.tls``); ``client_certs``: mutual TLS."""
    require_redis_server()
    opts = dict(PERSISTENCE if persistent else {"appendonly": "no"})
    if client_certs:
        opts["tls-auth-clients"] = "yes"
    with _base_dir() as base, contextlib.ExitStack() as stack:
        tls = make_tls_files(base)
        yield _new_server(base, stack, opts, password=password, tls=tls)


@dataclass
class SentinelGroup:
    """A master, its replica and three sentinels watching them as ``master_name``."""

    master_name: str
    servers: list[RedisServer]
    sentinels: list[RedisServer]
    password: str | None = None
    tls: TlsFiles | None = None

    @property
    def master(self) -> RedisServer:
        """The server that was master at start (see :meth:`current_master`)."""
        return self.servers[0]

    @property
    def replica(self) -> RedisServer:
        """The server that was the replica at start."""
        return self.servers[1]

    @property
    def sentinel_addresses(self) -> str:
        """``"h:p,h:p,h:p"``: the value of the ``redis_sentinels`` setting."""
        return ",".join(f"{s.host}:{s.port}" for s in self.sentinels)

    def url(self, db: int = 0) -> str:
        """``redis+sentinel://[:password@]h:p,h:p,h:p/<master>/<db>``."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis+sentinel://{auth}{self.sentinel_addresses}/{self.master_name}/{db}"

    def master_address(self, sentinel: int = 0) -> tuple[str, int]:
        """The master's address as sentinel number ``sentinel`` reports it."""
        client = self.sentinels[sentinel].client()
        try:
            host, port = client.sentinel_get_master_addr_by_name(self.master_name)
        finally:
            client.close()
        return (host.decode() if isinstance(host, bytes) else host, int(port))

    def current_master(self) -> RedisServer:
        """The server the sentinels name as master now."""
        port = self.master_address()[1]
        return next(s for s in self.servers if s.port == port)

    def current_replica(self) -> RedisServer:
        """The server that is not the master now."""
        port = self.master_address()[1]
        return next(s for s in self.servers if s.port != port)

    def settled(self) -> bool:
        """Every sentinel agrees on the master, knows the replica and the other sentinels,
        the master is master and the replica's link to it is up."""
        ports = {self.master_address(i)[1] for i in range(len(self.sentinels))}
        if len(ports) != 1:
            return False
        port = ports.pop()
        master = next(s for s in self.servers if s.port == port)
        replica = next(s for s in self.servers if s.port != port)
        if master.info("replication").get("role") != "master":
            return False
        rep = replica.info("replication")
        if rep.get("role") != "slave" or rep.get("master_port") != port:
            return False
        if rep.get("master_link_status") != "up":
            return False
        for sentinel in self.sentinels:
            client = sentinel.client()
            try:
                state = client.execute_command("SENTINEL", "MASTER", self.master_name)
                replicas = client.execute_command("SENTINEL", "REPLICAS", self.master_name)
            finally:
                client.close()
            if int(state[b"num-other-sentinels"]) != len(self.sentinels) - 1:
                return False
            if not any(b"s_down" not in r[b"flags"] for r in replicas):
                return False
        return True

    def wait_settled(self, timeout: float = TOPOLOGY_TIMEOUT) -> None:
        _wait(self.settled, timeout, f"sentinel group {self.master_name!r} to settle")

    def failover(self, timeout: float = TOPOLOGY_TIMEOUT) -> RedisServer:
        """``SENTINEL FAILOVER``; wait until the replica is master, every sentinel says so
        and the old master replicates from it; return the new master."""
        old = self.master_address()[1]
        client = self.sentinels[0].client()
        try:
            client.execute_command("SENTINEL", "FAILOVER", self.master_name)
        finally:
            client.close()

        def done() -> bool:
            return self.master_address()[1] != old and self.settled()

        _wait(done, timeout, f"failover of {self.master_name!r}")
        return self.current_master()


@contextlib.contextmanager
def sentinel_group(
    master_name: str = "qrng",
    *,
    password: str | None = None,
    options: Mapping[str, str] | None = None,
    down_after_ms: int = 1000,
    tls: bool = False,
) -> Iterator[SentinelGroup]:
    """A persistent master, a persistent replica and three sentinels (quorum 2).

    ``options`` go to both servers' configuration (e.g. ``min-replicas-to-write``).
    ``tls``: the servers speak TLS only (replication too; ``group.tls`` holds the
    CA and certificates); the sentinels reach them over TLS and still answer
    clients on their plain ports. Yields once replication is up and every
    sentinel knows the replica and the other sentinels, so
    :meth:`SentinelGroup.failover` can succeed at once.
    """
    require_redis_server()
    opts = dict(PERSISTENCE) | dict(options or {})
    with _base_dir() as base, contextlib.ExitStack() as stack:
        files = make_tls_files(base) if tls else None
        if files is not None:
            opts["tls-replication"] = "yes"
        master = _new_server(base, stack, opts, password=password, tls=files)
        replica_opts = opts | {"replicaof": f"{HOST} {master.port}"}
        replica = _new_server(base, stack, replica_opts, password=password, tls=files)
        group = SentinelGroup(master_name, [master, replica], [], password, files)
        _wait(
            lambda: replica.info("replication").get("master_link_status") == "up",
            TOPOLOGY_TIMEOUT,
            "the replica's link to the master",
        )
        sentinel_opts = {
            "sentinel monitor": f"{master_name} {HOST} {master.port} 2",
            "sentinel down-after-milliseconds": f"{master_name} {down_after_ms}",
            "sentinel failover-timeout": f"{master_name} 10000",
            "sentinel parallel-syncs": f"{master_name} 1",
        }
        if password is not None:
            sentinel_opts["sentinel auth-pass"] = f"{master_name} {_quoted(password)}"
        if files is not None:
            sentinel_opts |= {
                "tls-cert-file": str(files.server_cert),
                "tls-key-file": str(files.server_key),
                "tls-ca-cert-file": str(files.ca),
                "tls-replication": "yes",
                "tls-auth-clients": "no",
            }
        for _ in range(3):
            extra = {"tls-port": str(free_port())} if files is not None else {}
            sentinel = _new_server(base, stack, sentinel_opts | extra, sentinel=True)
            group.sentinels.append(sentinel)
        group.wait_settled()
        yield group


@dataclass
class ClusterServers:
    """The master nodes of a Redis Cluster."""

    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        """``redis://`` URL of the first node (any node serves to discover the cluster)."""
        return self.nodes[0].url

    @property
    def addresses(self) -> str:
        return ",".join(f"{n.host}:{n.port}" for n in self.nodes)

    def ok(self) -> bool:
        for node in self.nodes:
            client = node.client()
            try:
                info = client.execute_command("CLUSTER", "INFO")
            finally:
                client.close()
            text = info.decode() if isinstance(info, bytes) else str(info)
            if (
                "cluster_state:ok" not in text
                or f"cluster_known_nodes:{len(self.nodes)}" not in text
            ):
                return False
        return True


@contextlib.contextmanager
def redis_cluster(
    masters: int = 3, *, persistent: bool = False, password: str | None = None
) -> Iterator[ClusterServers]:
    """``masters`` cluster nodes, slots split by ``redis-cli --cluster create``, state ok;
    ``password``: every node requires it (and each node's ``url`` carries it)."""
    require_redis_server()
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("redis-cli is not installed (apt-get install redis-tools)")
    opts = dict(PERSISTENCE if persistent else {"appendonly": "no"}) | {
        "cluster-enabled": "yes",
        "cluster-config-file": "nodes.conf",
        "cluster-node-timeout": "2000",
    }
    with _base_dir() as base, contextlib.ExitStack() as stack:
        nodes = [_new_server(base, stack, opts, password=password) for _ in range(masters)]
        cluster = ClusterServers(nodes)
        create = [cli, "--cluster", "create", *(f"{n.host}:{n.port}" for n in nodes)]
        env = dict(os.environ)
        if password is not None:
            env["REDISCLI_AUTH"] = password  # not on the command line
        done = subprocess.run(
            [*create, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            timeout=TOPOLOGY_TIMEOUT,
            check=False,
            env=env,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed: {done.stdout!r} {done.stderr!r}"
            )
        _wait(cluster.ok, TOPOLOGY_TIMEOUT, "cluster_state:ok on every node")
        yield cluster
