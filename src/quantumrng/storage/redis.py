"""One way to open Redis from settings: every store that lives in Redis (the pool, its
harvest lease, API keys, usage counters, rate limits) connects here.

- ``redis://``, ``unix://`` and ``rediss://`` (TLS, verified against
  ``redis_ca_file`` or the system's CAs, host name checked, with a client
  certificate for mutual TLS), a user and password in the URL, percent-encoded;
- Sentinel: ``redis+sentinel://[user:password@]host:port[,host:port...]/<master>[/db]``,
  or ``redis_sentinels`` + ``redis_master`` beside a plain ``redis_url`` whose
  user, password, database and TLS apply to the master (the Sentinels are
  reached without TLS or password). Every new connection asks the Sentinels
  where the master is; a connection to a demoted master is dropped at its
  first refused write;
- Cluster: ``redis_cluster`` with ``redis_url`` naming any node.

Every key of a deployment starts with :func:`key_prefix`, ``{<redis_key>}``: a
Redis Cluster hash tag, so every key lives in one slot and every script (which
touches several keys) runs on one node.

Clients never retry a command: a retried write after a lost reply could store
blocks twice or charge a quota twice. A failed command is ``Unavailable``
(503) through :func:`~quantumrng.storage.errors.translate_errors`; the next
command reconnects, so a restarted or failed-over Redis is used again without
restarting the node.

Replication is asynchronous: a write only the old master saw is undone by a
failover (a taken block comes back and is served twice). Under Sentinel, a
write goes through :func:`run_script` or :func:`run_command`, which follow it
with ``WAIT`` on the same connection and count it only once a replica has it.

The password never leaves this module: :func:`redacted` is what reprs, logs,
errors and ``status`` show.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, unquote, urlsplit

from quantumrng.errors import ConfigError, Unavailable
from quantumrng.storage.errors import translate_errors

if TYPE_CHECKING:
    from types import ModuleType

    from quantumrng.config import Settings

__all__ = [
    "INSTALL_HINT",
    "describe",
    "import_redis",
    "key_prefix",
    "open_redis",
    "open_url",
    "redacted",
    "replicas_to_wait",
    "run_command",
    "run_script",
]

INSTALL_HINT = "the Redis stores need the redis package: pip install 'quantumrng[redis]'"
SOCKET_TIMEOUT = 10.0  # seconds per command before Unavailable
CONNECT_TIMEOUT = 5.0  # seconds to open a connection
REPLICA_WAIT_MS = 2000  # how long a write waits for a replica's acknowledgement (Sentinel)
SCHEMES = ("redis", "rediss", "unix", "redis+sentinel")
SENTINEL_PORT = 26379
_BAD_URL = "redis_url is not a valid Redis URL"


def import_redis() -> ModuleType:
    """Import the optional ``redis`` package, or explain how to install it."""
    try:
        return importlib.import_module("redis")
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None


def key_prefix(redis_key: str) -> str:
    """The prefix of every key of a deployment: ``redis_key`` as a Cluster hash tag."""
    if not redis_key or "{" in redis_key or "}" in redis_key:
        raise ConfigError("redis_key must be non-empty and hold no braces")
    return "{" + redis_key + "}"


def redacted(url: str) -> str:
    """Return ``url`` without user, password or query: what may be shown anywhere."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "?"
    hosts = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{hosts}{parts.path}" if parts.scheme else "?"


def describe(settings: Settings) -> str:
    """What ``status`` and reprs show of the Redis ``settings`` name: no user, no
    password; the Sentinels and master when they come from settings, and a Cluster
    said so."""
    url = settings.redis_url
    if settings.redis_sentinels.strip() and urlsplit(url).scheme != "redis+sentinel":
        hosts = ",".join(
            f"{h}:{p}" for h, p in _addresses(settings.redis_sentinels, "redis_sentinels")
        )
        try:
            parts = urlsplit(url)
        except ValueError:
            return "?"
        tls = " (TLS)" if parts.scheme == "rediss" else ""
        db = parts.path.strip("/") or "0"
        return f"redis+sentinel://{hosts}/{settings.redis_master.strip()}/{db}{tls}"
    return redacted(url) + (" (cluster)" if settings.redis_cluster else "")


def _no_retry() -> Any:
    """A redis-py ``Retry`` that never sends a command twice (and never reconnects in a loop)."""
    retry = importlib.import_module("redis.retry").Retry
    no_backoff = importlib.import_module("redis.backoff").NoBackoff
    return retry(no_backoff(), 0)


def _common() -> dict[str, Any]:
    return {
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "decode_responses": False,
    }


def _split(url: str) -> SplitResult:
    try:
        parts = urlsplit(url)
        if parts.scheme != "redis+sentinel":
            parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ConfigError(_BAD_URL) from None
    if parts.scheme not in SCHEMES:
        schemes = ", ".join(f"{s}://" for s in SCHEMES)
        raise ConfigError(f"redis_url must start with one of {schemes}")
    if parts.scheme in ("redis", "rediss") and parts.path.strip("/"):
        _db(parts.path.strip("/"))
    return parts


def open_url(url: str) -> Any:
    """Open a single Redis server from a ``redis://``, ``rediss://`` or ``unix://`` URL
    (no Sentinel, no Cluster, system CAs): for tools and tests."""
    redis = import_redis()
    if _split(url).scheme == "redis+sentinel":
        raise ConfigError("redis_url must start with redis://, rediss:// or unix://")
    try:
        return redis.Redis.from_url(url, retry=_no_retry(), **_common())
    except (ValueError, TypeError):
        raise ConfigError(_BAD_URL) from None


@dataclass(frozen=True)
class _Auth:
    """Credentials and database of the data servers (never shown: see :func:`redacted`)."""

    username: str | None
    password: str | None
    db: int

    def __repr__(self) -> str:
        return f"_Auth(db={self.db})"

    def kwargs(self) -> dict[str, Any]:
        return {"username": self.username, "password": self.password, "db": self.db}


def _credentials(parts: SplitResult) -> tuple[str | None, str | None]:
    userinfo, at, _ = parts.netloc.rpartition("@")
    if not at:
        return None, None
    user, colon, password = userinfo.partition(":")
    return (unquote(user) or None, unquote(password) if colon else None)


def _db(text: str) -> int:
    if not text.isdigit():
        raise ConfigError("the database in redis_url must be a number")
    return int(text)


def _addresses(text: str, what: str) -> list[tuple[str, int]]:
    """``"host:port,host:port"`` (IPv6 in brackets) as pairs; a port defaults to 26379."""
    out = []
    for item in text.split(","):
        item = item.strip()
        try:
            parts = urlsplit(f"//{item}")
            host, port = parts.hostname, parts.port
        except ValueError:
            host, port = None, None
        if not item or not host or parts.netloc != item or "@" in item:
            raise ConfigError(f"{what} must be host:port pairs separated by commas")
        out.append((host, port or SENTINEL_PORT))
    return out


def open_redis(settings: Settings) -> Any:
    """Return a client for the Redis that ``settings`` name (never retrying a command).

    A stand-alone server (``redis://``, ``rediss://``, ``unix://``), the current
    master of a Sentinel group (``redis+sentinel://`` or ``redis_sentinels`` +
    ``redis_master``; each new connection asks the Sentinels where the master
    is, and a connection to a demoted master is dropped at its first refused
    write), or a Cluster (``redis_cluster``). Nothing is connected yet, but a
    Cluster: it reads the slot map at once, and is ``Unavailable`` when no node
    answers.
    """
    parts = _split(settings.redis_url)
    sentinels = settings.redis_sentinels.strip()
    if parts.scheme == "redis+sentinel":
        if sentinels or settings.redis_cluster:
            raise ConfigError(
                "redis+sentinel:// names the Sentinels; leave redis_sentinels, "
                "redis_master and redis_cluster unset"
            )
        return _open_sentinel(settings, parts)
    if sentinels:
        if parts.scheme == "unix":
            raise ConfigError("with redis_sentinels, redis_url must be redis:// or rediss://")
        return _open_sentinel(settings, parts)
    if settings.redis_cluster:
        if parts.scheme == "unix":
            raise ConfigError("with redis_cluster, redis_url must be redis:// or rediss://")
        return _open_cluster(settings, parts)
    kwargs = _common()
    if parts.scheme == "rediss":
        kwargs.update(_tls(settings))
    redis = import_redis()
    try:
        return redis.Redis.from_url(settings.redis_url, retry=_no_retry(), **kwargs)
    except (ValueError, TypeError):
        raise ConfigError(_BAD_URL) from None


def _open_sentinel(settings: Settings, parts: SplitResult) -> Any:
    """The current master of a Sentinel group, found anew by every new connection."""
    username, password = _credentials(parts)
    if parts.query or parts.fragment:
        raise ConfigError("redis_url takes no query or fragment with Sentinel")
    if parts.scheme == "redis+sentinel":
        hosts = parts.netloc.rpartition("@")[2]
        segments = parts.path.strip("/").split("/")
        if not segments[0] or len(segments) > 2:
            raise ConfigError("redis+sentinel:// URLs end with /<master name>[/<db>]")
        master = unquote(segments[0])
        db = _db(segments[1]) if len(segments) == 2 else 0
        addresses = _addresses(hosts, "the Sentinels of redis_url")
    else:
        master = settings.redis_master.strip()
        path = parts.path.strip("/")
        db = _db(path) if path else 0
        addresses = _addresses(settings.redis_sentinels, "redis_sentinels")
    auth = _Auth(username, password, db)
    sentinel_mod = importlib.import_module("redis.sentinel")
    common = _common()
    sentinel_kwargs = {
        "socket_timeout": common["socket_timeout"],
        "socket_connect_timeout": common["socket_connect_timeout"],
        "retry": _no_retry(),
    }
    kwargs = common | auth.kwargs() | {"retry": _no_retry()}
    if parts.scheme == "rediss":
        kwargs |= {"ssl": True} | _tls(settings)
    manager = sentinel_mod.Sentinel(addresses, sentinel_kwargs=sentinel_kwargs)
    return manager.master_for(master, **kwargs)


def _open_cluster(settings: Settings, parts: SplitResult) -> Any:
    """A Cluster client that discovers every node from the one ``redis_url`` names.

    ``retry`` with 0 retries: redis-py's cluster client then sends a command
    once; after a connection error or timeout (outcome unknown) it refreshes
    the slot map and raises, and only redirections (MOVED, ASK), which say
    the command did not run, send it to another node.
    """
    path = parts.path.strip("/")
    if path and path != "0":
        raise ConfigError("a Redis Cluster has only database 0")
    if parts.query or parts.fragment:
        raise ConfigError("redis_url takes no query or fragment with redis_cluster")
    if not parts.hostname:
        raise ConfigError(_BAD_URL)
    username, password = _credentials(parts)
    kwargs = _common() | {"username": username, "password": password}
    if parts.scheme == "rediss":
        kwargs |= {"ssl": True} | _tls(settings)
    cluster = importlib.import_module("redis.cluster")
    with translate_errors("the Redis Cluster"):
        try:
            return cluster.RedisCluster(
                host=parts.hostname, port=parts.port or 6379, retry=_no_retry(), **kwargs
            )
        except cluster.RedisClusterException:
            raise Unavailable("the Redis Cluster failed: no node answered") from None


def _tls(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of a verified TLS connection (``rediss://``)."""
    out: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
    if settings.redis_ca_file is not None:
        out["ssl_ca_certs"] = str(settings.redis_ca_file)
    if settings.redis_cert_file is not None and settings.redis_key_file is not None:
        out["ssl_certfile"] = str(settings.redis_cert_file)
        out["ssl_keyfile"] = str(settings.redis_key_file)
    return out


def replicas_to_wait(client: Any) -> int:
    """How many replicas must acknowledge a write before it counts: 1 for a Sentinel
    master (replication is asynchronous; a write only the old master saw is gone after
    a failover), else 0."""
    sentinel = importlib.import_module("redis.sentinel")
    pool = getattr(client, "connection_pool", None)
    return 1 if isinstance(pool, sentinel.SentinelConnectionPool) else 0


def run_script(client: Any, script: Any, keys: list[str], args: list[Any]) -> Any:
    """Run a registered script; on a Sentinel master, on the same connection follow it
    with ``WAIT`` and raise :class:`Unavailable` unless a replica acknowledged it.

    A write the master acknowledged but no replica received may be undone by a
    failover: a taken block would come back (served twice), a put block vanish.
    A reply with no acknowledgement is therefore not used (its blocks are dropped
    unserved) and the caller sees ``Unavailable``, as for a lost reply; the idle
    connections are closed, so the next command asks the Sentinels where the
    master is instead of writing to a demoted one until Sentinel reconfigures it.
    Raises redis-py's errors otherwise; callers wrap this in ``translate_errors``.
    """
    replicas = replicas_to_wait(client)
    if replicas == 0:
        return script(keys=keys, args=args)
    noscript = importlib.import_module("redis.exceptions").NoScriptError
    command = ("EVALSHA", script.sha, len(keys), *keys, *args)
    try:
        return _then_wait(client, command, replicas)
    except noscript:
        client.script_load(script.script)  # NOSCRIPT: the script did not run
        return _then_wait(client, command, replicas)


def run_command(client: Any, *command: Any) -> Any:
    """Run one write command (``SET``, ``DEL``...); on a Sentinel master followed by
    ``WAIT`` as in :func:`run_script`."""
    replicas = replicas_to_wait(client)
    if replicas == 0:
        return client.execute_command(*command)
    return _then_wait(client, command, replicas)


def _then_wait(client: Any, command: tuple[Any, ...], replicas: int) -> Any:
    """``command`` then ``WAIT`` on one connection (``WAIT`` counts that connection's
    writes); :class:`Unavailable` unless ``replicas`` acknowledged it in time."""
    pipe = client.pipeline(transaction=False)
    pipe.execute_command(*command)
    pipe.wait(replicas, REPLICA_WAIT_MS)
    reply, acknowledged = pipe.execute()
    if int(acknowledged) < replicas:
        client.connection_pool.disconnect(inuse_connections=False)  # ask the Sentinels anew
        raise Unavailable("the Redis master's write reached no replica in time")
    return reply
