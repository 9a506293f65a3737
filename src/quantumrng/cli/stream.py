"""``qrng stream``: random bytes without end, into a FIFO or standard output, for rngd.

``qrng stream --fifo PATH`` keeps a FIFO full so that ``rngd -r PATH``
(rng-tools) takes this service as a hardware source: rngd runs its own FIPS
140-2 tests on what it reads and feeds the kernel. Without ``--fifo`` the
bytes go to standard output until the reader closes it (exit 0).

Where the bytes come from: this host's node, as ``qrng bytes`` (``--mode
drbg``: the engine's CTR_DRBG; ``--mode raw``: the pool's conditioned blocks
under RBG3(XOR), with the node's harvester running to refill it); or, with
``--url``, a QuantumRNG service (``Client.bytes``; API key from
``QRNG_API_KEY``, ``--ca`` for https), ``--chunk`` bytes a request.

Never weaker bytes: when the source has nothing to give (raw mode's empty
pool, a source in its failure state, a 503 or 429, a service that cannot be
reached) nothing is written; a line on stderr says so and the read is tried
again after the server's ``Retry-After`` or a backoff (1 s doubling to 30 s).
Any other failure (raw output of an uncredited source, a refused API key)
is one line and exit 1; bad arguments exit 2.

The FIFO is created with mode 0600 when missing; a path that exists and is
not a FIFO is refused (exit 2). When its reader closes it, the rest of the
chunk being written is dropped and the next reader is waited for; a reader
that opens the FIFO before the stream noticed reads on from the bytes the
pipe still buffers. Either way each byte is read at most once. SIGTERM and
SIGINT stop the command at once, exit 0.
The bytes are ``bytes`` objects (immutable: dropped, not zeroed) and are
never logged.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import sys
import time
from collections.abc import Callable, Iterator
from types import FrameType

import click

from quantumrng.block import BLOCK_BYTES
from quantumrng.cli.options import CA_FILE, command_node, service_url_option
from quantumrng.errors import RateLimited, Unavailable

__all__ = ["COMMANDS"]

DEFAULT_CHUNK = 1 << 16
MAX_CHUNK = 1 << 24
REMOTE_TIMEOUT = 30.0  # seconds per network operation of --url
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
POLL_SECONDS = 0.1  # how often a wait looks for SIGTERM or a reader


class _Stopped(BaseException):
    """Raised by the signal handler inside a blocking write or fetch."""


class Stop:
    """SIGTERM and SIGINT: a flag, raised as :class:`_Stopped` only while the main
    thread is blocked in :meth:`interruptible` code (a write, a remote fetch),
    where no lock of ours is held."""

    def __init__(self) -> None:
        self.requested = False
        self._blocking = False

    def install(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.requested = True
            if self._blocking:
                self._blocking = False
                raise _Stopped

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        self._blocking = True
        try:
            if self.requested:  # after the flag is up: a signal cannot slip in between
                raise _Stopped
            yield
        finally:
            self._blocking = False

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.requested and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, POLL_SECONDS))
        if self.requested:
            raise _Stopped


def _log(message: str) -> None:
    click.echo(f"qrng stream: {message}", err=True)


# -- the source --------------------------------------------------------------------


def _local_source(ctx: click.Context, mode: str, chunk: int) -> Callable[[], bytes]:
    node = command_node(ctx)
    if mode == "drbg":
        return lambda: node.engine.random_bytes(chunk)
    node.check_raw()
    node.harvester.start()
    size = min(chunk, node.settings.pool_low_water * BLOCK_BYTES)  # a refill can serve it

    def raw() -> bytes:
        try:
            return node.raw_bytes(size)[0]
        except Unavailable:
            node.harvester.wake()
            raise

    return raw


def _remote_source(
    ctx: click.Context, url: str, ca_file: str | None, mode: str, chunk: int
) -> Callable[[], bytes]:
    from quantumrng.client import Client

    client = Client(url, verify=ca_file or True, timeout=REMOTE_TIMEOUT)
    ctx.call_on_close(client.close)
    return lambda: client.bytes(chunk, mode)


def _reads(read: Callable[[], bytes], stop: Stop) -> Iterator[bytes]:
    """Chunks from ``read``, waiting out what may pass (503, 429, unreachable)."""
    delay = BACKOFF_FIRST
    while True:
        try:
            with stop.interruptible():
                data = read()
        except (Unavailable, RateLimited) as exc:
            wait = exc.retry_after if exc.retry_after is not None else delay
            wait = min(max(wait, POLL_SECONDS), BACKOFF_MAX)
            _log(f"{exc.message}; nothing written, trying again in {wait:g} s")
            stop.sleep(wait)
            delay = min(delay * 2, BACKOFF_MAX)
            continue
        delay = BACKOFF_FIRST
        yield data


# -- where the bytes go ------------------------------------------------------------


def _write_all(fd: int, data: bytes, stop: Stop) -> None:
    view = memoryview(data)
    with stop.interruptible():
        while view:
            view = view[os.write(fd, view) :]


def _prepare_fifo(path: str) -> None:
    try:
        os.mkfifo(path, 0o600)
        _log(f"made the FIFO {path} (mode 0600)")
    except FileExistsError:
        mode = os.stat(path).st_mode
        if not stat.S_ISFIFO(mode):
            raise click.UsageError(f"{path} exists and is not a FIFO") from None
    except OSError as exc:
        raise click.UsageError(f"cannot make the FIFO {path}: {exc.strerror}") from None


def _open_for_reader(path: str, stop: Stop) -> int:
    """Wait for a reader of the FIFO (polling, so a stop is seen); its fd, blocking."""
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise click.ClickException(f"cannot open {path}: {exc.strerror}") from None
            stop.sleep(POLL_SECONDS)
            continue
        os.set_blocking(fd, True)
        return fd


def _to_fifo(path: str, chunks: Iterator[bytes], stop: Stop) -> None:
    _prepare_fifo(path)
    while True:
        fd = _open_for_reader(path, stop)
        _log(f"a reader opened {path}")
        try:
            for chunk in chunks:
                _write_all(fd, chunk, stop)
        except BrokenPipeError:
            _log(f"the reader closed {path}; waiting for the next")
        finally:
            os.close(fd)


def _to_stdout(chunks: Iterator[bytes], stop: Stop) -> None:
    fd = sys.stdout.fileno()
    with contextlib.suppress(BrokenPipeError):
        for chunk in chunks:
            _write_all(fd, chunk, stop)


@click.command("stream")
@click.option(
    "--fifo",
    type=click.Path(dir_okay=False),
    help="Keep this FIFO full (made 0600 if missing), for rngd -r; default: standard output.",
)
@click.option("--mode", type=click.Choice(["drbg", "raw"]), default="drbg", show_default=True)
@service_url_option(
    "A QuantumRNG service to read from (default: this host's node).", required=False
)
@CA_FILE
@click.option(
    "--chunk",
    type=click.IntRange(1, MAX_CHUNK),
    default=DEFAULT_CHUNK,
    show_default=True,
    help="Bytes per read (per request with --url).",
)
@click.pass_context
def stream_command(
    ctx: click.Context,
    fifo: str | None,
    mode: str,
    url: str | None,
    ca_file: str | None,
    chunk: int,
) -> None:
    """Write random bytes without end to a FIFO (for rngd -r) or standard output."""
    stop = Stop()
    stop.install()
    try:
        if url is not None:
            read = _remote_source(ctx, url, ca_file, mode, chunk)
        else:
            read = _local_source(ctx, mode, chunk)
        chunks = _reads(read, stop)
        if fifo is None:
            _to_stdout(chunks, stop)
        else:
            _to_fifo(fifo, chunks, stop)
    except _Stopped:
        _log("stopped")


COMMANDS: list[click.Command] = [stream_command]
