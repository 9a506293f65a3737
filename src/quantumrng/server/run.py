"""Run the app on uvicorn (uvloop + httptools), with N workers and TLS 1.2+.

TLS: minimum TLS 1.2; OpenSSL picks TLS 1.3 whenever the client has it; the
TLS 1.2 suites are ECDHE with AES-GCM or ChaCha20-Poly1305 only (forward
secrecy and AEAD, per RFC 9325 §4.2); no compression or renegotiation.
HSTS (RFC 6797) is sent on every response when TLS is on.

Workers are spawned processes: each builds its own app (and DRBG, seeded from
its own pool blocks) from a picklable factory; the harvest lease in the
pool's store makes one process of the whole deployment harvest each source.
With several workers the metrics of all of them are kept in a private
directory so that a scrape sees the node's totals (``server.metrics``).

Everything that would stop the server is checked before anything is printed
or uvicorn starts, and raised as one error for the CLI's one line: the TLS
files, the pool, the key store (when keys are needed), and the listening
socket, which is bound here and handed to uvicorn. The access log shows
query names, never their values (an API key may be sent as ``?api_key=``),
and nothing shaped like a key or token anywhere in the line.

Limits on connections, header size and header time are enforced by
:mod:`quantumrng.server.protocol`, before the app. ``X-Forwarded-For`` and
``X-Forwarded-Proto`` are read only from the proxies named in
``forwarded_allow_ips``; by default they are ignored, so a client cannot pick
the address its limits are counted by.
"""

from __future__ import annotations

import logging
import re
import resource
import socket
import ssl
from collections.abc import Callable

from quantumrng.config import Settings
from quantumrng.errors import ConfigError, Unavailable

__all__ = [
    "HSTS",
    "TLS_CIPHERS",
    "AppFactory",
    "RedactQuery",
    "bind_socket",
    "build_config",
    "install_access_log_filter",
    "raise_fd_limit",
    "redact_query",
    "redact_secrets",
    "serve",
    "tls_context",
]

log = logging.getLogger(__name__)

TLS_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"  # TLS 1.2 suites; 1.3 suites are all AEAD
HSTS = "max-age=63072000; includeSubDomains"  # two years, RFC 6797 §6.1
GRACEFUL_SHUTDOWN_SECONDS = 10  # open streams get this long before they are cut
REDACTED = "<redacted>"
_QUERY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,31}")  # longer names may be a secret
# A key (``qrng_<12 hex>_<43 base64url>``) or any part of one from its prefix on,
# else a maximal run of base64url characters long enough to be a token.
_SECRET_CANDIDATE = re.compile(r"(?i:qrng(?:_|%5f))[A-Za-z0-9_\-%]*|[A-Za-z0-9_\-%]{20,}")
_CHARACTER_CLASSES = (re.compile(r"[a-z]"), re.compile(r"[A-Z]"), re.compile(r"[0-9]"))
FD_LIMIT_TARGET = 1 << 20  # open files wanted when the hard limit is unlimited


def redact_query(path: str) -> str:
    """Return ``path`` with every query value replaced by ``<redacted>``; names stay."""
    base, sep, query = path.partition("?")
    if not sep:
        return path
    parts = []
    for item in query.split("&"):
        name, eq, _ = item.partition("=")
        keep = eq and _QUERY_NAME.fullmatch(name) and not name.startswith("qrng_")
        parts.append(f"{name}={REDACTED}" if keep else REDACTED)
    return f"{base}?{'&'.join(parts)}"


def _redact_candidate(match: re.Match[str]) -> str:
    text = match.group()
    if text[:5].lower() == "qrng_" or text[:7].lower() == "qrng%5f":
        return REDACTED
    classes = sum(1 for pattern in _CHARACTER_CLASSES if pattern.search(text))
    return REDACTED if classes >= 2 else text  # one class: a word such as ``get_num_bits``


def redact_secrets(text: str) -> str:
    """Replace anything shaped like a key or token in ``text`` by ``<redacted>``.

    That is any run from a ``qrng_`` prefix on (a whole key or part of
    one), and any run of 20 or more base64url characters (or ``%``-escapes,
    as a raw path shows them) that mixes two of lower case, upper case and
    digits (a bearer token, a key's secret).
    """
    return _SECRET_CANDIDATE.sub(_redact_candidate, text)


class RedactQuery(logging.Filter):
    """Redact query values, and anything key-shaped, in uvicorn's access lines.

    uvicorn logs ``(client, method, path with query, http version, status)``
    as the record's args: the path loses its query values, and every string
    argument (the client may come from ``X-Forwarded-For``) loses what
    :func:`redact_secrets` finds.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple):
            if len(args) == 5 and isinstance(args[2], str):
                args = (args[0], args[1], redact_query(args[2]), args[3], args[4])
            record.args = tuple(redact_secrets(a) if isinstance(a, str) else a for a in args)
        return True


def install_access_log_filter() -> None:
    """Add :class:`RedactQuery` to the ``uvicorn.access`` logger of this process (once)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactQuery) for f in access.filters):
        access.addFilter(RedactQuery())


class AppFactory:
    """A picklable ``() -> app`` that a spawned worker calls to build its app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(self) -> object:
        from quantumrng.server.app import create_app

        install_access_log_filter()  # a spawned worker logs its own requests
        return create_app(self.settings)


def _read_pem(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the TLS {what} {path}: {exc.strerror}") from None


def _check_tls_files(certfile: str, keyfile: str | None) -> None:
    """Name the file at fault before OpenSSL's "PEM lib" would; never quote its contents."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        x509.load_pem_x509_certificates(_read_pem(certfile, "certificate"))
    except ValueError:
        raise ConfigError(f"the TLS certificate {certfile} holds no PEM certificate") from None
    key_path = certfile if keyfile is None else keyfile
    try:
        load_pem_private_key(_read_pem(key_path, "key"), password=None)
    except TypeError:
        raise ConfigError(f"the TLS key {key_path} is encrypted; give an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"the TLS key {key_path} holds no usable PEM private key") from None


def tls_context(certfile: str, keyfile: str | None) -> ssl.SSLContext:
    """Return a server context: TLS 1.2 minimum, 1.3 preferred, strong ciphers only."""
    _check_tls_files(certfile, keyfile)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    try:
        ctx.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(f"the TLS key does not match the certificate {certfile}") from None
        raise ConfigError(
            f"cannot load the TLS certificate or key: {exc.reason or exc.strerror}"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot load the TLS certificate or key: {exc.strerror}") from None
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _uvicorn_tls(config: object, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn's ``ssl_context_factory``: our context instead of its default."""
    certfile = getattr(config, "ssl_certfile", None)
    keyfile = getattr(config, "ssl_keyfile", None)
    if certfile is None:
        raise ConfigError("TLS needs a certificate")
    return tls_context(str(certfile), None if keyfile is None else str(keyfile))


def build_config(settings: Settings, *, access_log: bool = False) -> object:
    """Return the ``uvicorn.Config`` for ``settings``, with our connection limits.

    Proxy headers are read only when ``forwarded_allow_ips`` names the
    proxies (uvicorn's default would trust any local one).
    """
    from quantumrng.server.protocol import ConnectionLimits, LimitedConfig

    proxies = ",".join(p.strip() for p in settings.forwarded_allow_ips.split(",") if p.strip())
    tls = settings.tls_cert is not None
    return LimitedConfig(
        AppFactory(settings),
        limits=ConnectionLimits.from_settings(settings),
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        lifespan="on",
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies,
        log_level=settings.log_level,
        access_log=access_log,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        ssl_certfile=str(settings.tls_cert) if tls else None,
        ssl_keyfile=str(settings.tls_key) if tls else None,
        ssl_context_factory=_uvicorn_tls if tls else None,
        headers=[("strict-transport-security", HSTS)] if tls else None,
    )


def raise_fd_limit(target: int = FD_LIMIT_TARGET) -> int:
    """Raise the soft limit on open files toward the hard limit; return the soft limit.

    Held sockets then meet ``max_connections`` before the descriptor table.
    Never fatal: a limit that cannot be raised is kept (spawned workers
    inherit whichever it is).
    """
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = target if hard == resource.RLIM_INFINITY else min(hard, target)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    except (ValueError, OSError) as exc:
        log.debug("qrng: open-file limit kept: %s", exc)
        return -1
    return int(soft)


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the listening socket as uvicorn would; raise one error if it cannot.

    An unresolvable or malformed host is a ``ConfigError``; an address
    taken or refused (in use, not on this machine, privileged port) is
    ``Unavailable``: the settings may be right, the machine is not ready.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except (socket.gaierror, UnicodeError) as exc:
        sock.close()
        reason = exc.strerror if isinstance(exc, socket.gaierror) else "not a valid name"
        raise ConfigError(f"cannot listen on {host}:{port}: unknown host ({reason})") from None
    except OSError as exc:
        sock.close()
        raise Unavailable(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _check_key_store(settings: Settings) -> None:
    """Refuse to start when requests need the key store and it cannot be read: the SQLite
    file when it exists, Redis (keys, counters and limits) with the Redis pool."""
    from quantumrng.server.access import Access
    from quantumrng.server.keys import open_key_store

    access = Access(settings)
    limits = access.anonymous_limits
    needed = access.auth_required or not limits.unlimited
    if not needed or (settings.pool != "redis" and not settings.keys_path.exists()):
        return
    try:
        store = open_key_store(settings)
        try:
            store.check()
        finally:
            store.close()
    except (ConfigError, Unavailable) as exc:
        if settings.pool == "redis":
            raise Unavailable(f"{exc.message} (check redis_url and that Redis is up)") from None
        raise Unavailable(f"{exc.message} (restore it, or move it aside to start empty)") from None


def _preflight(settings: Settings) -> None:
    """Fail in the parent, as one error, on what would crash every worker."""
    from quantumrng.node import Node
    if settings.tls_cert is not None:
        tls_context(
            str(settings.tls_cert), None if settings.tls_key is None else str(settings.tls_key)
        )
    Node(settings, harvest_on_demand=False).close()
    _check_key_store(settings)


def _warn_if_open(settings: Settings) -> None:
    """Warn when a non-loopback address serves without keys because auth was turned off."""
    from quantumrng.server.access import is_loopback

    if settings.require_auth is False and not is_loopback(settings.host):
        log.warning(
            "qrng: warning: authentication is disabled on the non-loopback address %s: "
            "anyone who can reach it may draw randomness without a key",
            settings.host,
        )


def serve(
    settings: Settings,
    *,
    access_log: bool = False,
    announce: Callable[[Settings], None] | None = None,
) -> None:
    """Serve ``settings`` until interrupted (blocking).

    Checks everything that could stop the start (TLS, pool, key store,
    address) first, then calls ``announce``, then runs uvicorn.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from quantumrng.server.metrics import multiprocess_metrics

    _preflight(settings)
    raise_fd_limit()
    sock = bind_socket(settings.host, settings.port)
    try:
        config = build_config(settings, access_log=access_log)
        assert isinstance(config, uvicorn.Config)
        install_access_log_filter()  # after uvicorn configured its loggers
        _warn_if_open(settings)
        with multiprocess_metrics(settings):  # before anything is printed or spawned
            if announce is not None:
                announce(settings)
            if config.workers > 1:
                Multiprocess(config, sockets=[sock]).run()
                return
            server = uvicorn.Server(config)
            server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        raise Unavailable(f"the server could not start on {settings.host}:{settings.port}")
