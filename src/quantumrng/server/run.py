"""Run the app on uvicorn (uvloop + httptools), with N workers and TLS 1.2+.

TLS: minimum TLS 1.2; OpenSSL picks TLS 1.3 whenever the client has it; the
TLS 1.2 suites are ECDHE with AES-GCM or ChaCha20-Poly1305 only (forward
secrecy and AEAD, per RFC 9325 §4.2); no compression or renegotiation.
HSTS (RFC 6797) is sent on every response when TLS is on.

Workers are spawned processes: each builds its own app (and DRBG, seeded from
its own pool blocks) from a picklable factory; the harvester's lock file
makes one of them harvest for the node.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable

from quantumrng.config import Settings
from quantumrng.errors import ConfigError

__all__ = ["HSTS", "TLS_CIPHERS", "AppFactory", "build_config", "serve", "tls_context"]

log = logging.getLogger(__name__)

TLS_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"  # TLS 1.2 suites; 1.3 suites are all AEAD
HSTS = "max-age=63072000; includeSubDomains"  # two years, RFC 6797 §6.1
GRACEFUL_SHUTDOWN_SECONDS = 10  # open streams get this long before they are cut


class AppFactory:
    """A picklable ``() -> app`` that a spawned worker calls to build its app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(self) -> object:
        from quantumrng.server.app import create_app

        return create_app(self.settings)


def tls_context(certfile: str, keyfile: str | None) -> ssl.SSLContext:
    """Return a server context: TLS 1.2 minimum, 1.3 preferred, strong ciphers only."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    try:
        ctx.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS certificate or key: {exc}") from None
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
    """Return the ``uvicorn.Config`` for ``settings``."""
    import uvicorn

    tls = settings.tls_cert is not None
    return uvicorn.Config(
        AppFactory(settings),
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level=settings.log_level,
        access_log=access_log,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        ssl_certfile=str(settings.tls_cert) if tls else None,
        ssl_keyfile=str(settings.tls_key) if tls else None,
        ssl_context_factory=_uvicorn_tls if tls else None,
        headers=[("strict-transport-security", HSTS)] if tls else None,
    )


def _preflight(settings: Settings) -> None:
    """Fail in the parent, as one error, on what would crash every worker."""
    from quantumrng.node import Node

    if settings.tls_cert is not None:
        tls_context(
            str(settings.tls_cert), None if settings.tls_key is None else str(settings.tls_key)
        )
    Node(settings, harvest_on_demand=False).close()


def serve(settings: Settings, *, access_log: bool = False) -> None:
    """Serve ``settings`` until interrupted (blocking)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    _preflight(settings)
    config = build_config(settings, access_log=access_log)
    assert isinstance(config, uvicorn.Config)
    if config.workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        raise ConfigError(f"the server could not start on {settings.host}:{settings.port}")
