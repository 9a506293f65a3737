"""One way to open Redis from settings: every store that lives in Redis (the pool, its
harvest lease, API keys, usage counters, rate limits) connects here.

- ``redis://`` and ``rediss://`` (TLS, verified against ``redis_ca_file`` or the
  system's CAs, with an optional client certificate), a password in the URL;
- Sentinel: ``redis+sentinel://[:password@]host:port[,host:port...]/<master>[/db]``,
  or ``redis_sentinels`` + ``redis_master`` beside a plain ``redis_url``;
- Cluster: ``redis_cluster`` with ``redis_url`` naming any node.

Every key of a deployment starts with :func:`key_prefix`, ``{<redis_key>}``: a
Redis Cluster hash tag, so every key lives in one slot and every script (which
touches several keys) runs on one node.

Clients never retry a command: a retried write after a lost reply could store
blocks twice or charge a quota twice. A failed command is ``Unavailable``
(503) through :func:`~quantumrng.storage.errors.translate_errors`; the next
command reconnects, so a restarted or failed-over Redis is used again without
restarting the node.

The password never leaves this module: :func:`redacted` is what reprs, logs,
errors and ``status`` show.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from quantumrng.errors import ConfigError

if TYPE_CHECKING:
    from types import ModuleType

    from quantumrng.config import Settings

__all__ = ["INSTALL_HINT", "import_redis", "key_prefix", "open_redis", "redacted"]

INSTALL_HINT = "the Redis stores need the redis package: pip install 'quantumrng[redis]'"
SOCKET_TIMEOUT = 10.0  # seconds per command before Unavailable
CONNECT_TIMEOUT = 5.0  # seconds to open a connection
SCHEMES = ("redis", "rediss", "unix", "redis+sentinel")


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
    """Return ``url`` without user or password: what may be shown anywhere."""
    try:
        parts = urlsplit(url)
        hosts = parts.netloc.rpartition("@")[2] or parts.path or "?"
    except ValueError:
        return "?"
    path = parts.path if parts.netloc else ""
    return f"{parts.scheme}://{hosts}{path}"


def _no_retry() -> Any:
    retry = importlib.import_module("redis.retry").Retry
    no_backoff = importlib.import_module("redis.backoff").NoBackoff
    return retry(no_backoff(), 0)


def _common() -> dict[str, Any]:
    return {
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "decode_responses": False,
    }


def open_url(url: str) -> Any:
    """Open a single Redis server from a ``redis://``, ``rediss://`` or ``unix://`` URL
    (no Sentinel, no Cluster, system CAs): for tools and tests."""
    redis = import_redis()
    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError("redis_url must start with redis://, rediss:// or unix://")
    try:
        return redis.Redis.from_url(url, retry=_no_retry(), **_common())
    except ValueError:
        raise ConfigError("redis_url is not a valid Redis URL") from None


def open_redis(settings: Settings) -> Any:
    """Return a client for the Redis that ``settings`` name (never retrying a command)."""
    url = settings.redis_url
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        raise ConfigError("redis_url is not a valid Redis URL") from None
    if scheme not in SCHEMES:
        schemes = ", ".join(f"{s}://" for s in SCHEMES)
        raise ConfigError(f"redis_url must start with one of {schemes}")
    kwargs = _common()
    if scheme == "rediss":
        kwargs.update(_tls(settings))
    redis = import_redis()
    try:
        return redis.Redis.from_url(url, retry=_no_retry(), **kwargs)
    except ValueError:
        raise ConfigError("redis_url is not a valid Redis URL") from None


def _tls(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of a verified TLS connection (``rediss://``)."""
    out: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
    if settings.redis_ca_file is not None:
        out["ssl_ca_certs"] = str(settings.redis_ca_file)
    if settings.redis_cert_file is not None and settings.redis_key_file is not None:
        out["ssl_certfile"] = str(settings.redis_cert_file)
        out["ssl_keyfile"] = str(settings.redis_key_file)
    return out


def _password(url: str) -> str | None:
    """The password of ``url``, percent-decoded, or None."""
    password = urlsplit(url).password
    return None if password is None else unquote(password)
