"""``qrng feed``: signed entropy from a QuantumRNG service, mixed into the kernel's pool.

``qrng feed --url URL --public-key FILE [--once | --interval S]`` fetches
``--bytes`` signed bytes (``Client.signed_bytes``; the API key from
``QRNG_API_KEY``), checks them offline against the pinned keys
(:func:`quantumrng.feed.check_answer`: signature, exactly the bytes asked
for, this API key's, not older or newer than ``--max-age``, a serial above
the one saved in ``--state``) and writes them to ``--device`` (``/dev/random``),
which mixes them into the pool without replacing anything. ``--credit [BITS]``
credits them through ``RNDADDENTROPY`` (a quarter of the bits by default);
that needs ``CAP_SYS_ADMIN`` and the random driver's device, both checked
before anything is fetched. Nothing is written unless every check passed.

``--once`` (the default) is for boot: the whole fetch is bounded by
``--timeout`` (10 s), DNS included, and any failure is one line on stderr.
Exit statuses:

- 0: fed;
- 1: no usable answer: the service unreachable, too slow, refusing (HTTP
  error) or answering something of the wrong shape or length;
- 2: usage: a bad flag, a key, CA or ``--state`` file that cannot be read;
- 3: the answer was refused: bad signature or unknown key, not the bytes
  asked for, another API key's, stale or dated ahead of the clock, a
  replayed serial;
- 4: this host cannot take it: the device or ``--state`` cannot be written,
  or ``--credit`` without ``CAP_SYS_ADMIN`` or on a device that is not the
  random driver's (no fallback to a write without credit: ask for what you want).

``--interval S`` runs as a daemon: a round every S seconds; a round that
fails with 1 or 3 is logged and the next round comes as planned; 2 and 4
stop it with that status; SIGTERM or SIGINT stop it with 0.

The bytes are copied into one ``bytearray`` that is zeroed after the write;
the ``bytes`` the client returned cannot be zeroed (immutable) and are dropped.
Log lines name serials, sizes and credits, never bytes.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import click

from quantumrng import feed
from quantumrng.cli.options import (
    CA_FILE,
    KEYS,
    PUBLIC_KEY,
    pinned_keys,
    read_last_serial,
    service_url_option,
)
from quantumrng.errors import ConfigError, QuantumRNGError
from quantumrng.keyfiles import replace_file
from quantumrng.signed import PublicKey

__all__ = ["COMMANDS", "EXIT_DEVICE", "EXIT_REFUSED", "EXIT_UNREACHABLE"]

EXIT_UNREACHABLE = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_DEVICE = 4


class FeedFailed(click.ClickException):
    """A round that fed nothing: one line, and the exit status of its kind."""


class NoAnswer(FeedFailed):
    """No usable answer came (exit 1)."""

    exit_code = EXIT_UNREACHABLE


class AnswerRefused(FeedFailed):
    """An answer came and failed a check (exit 3)."""

    exit_code = EXIT_REFUSED


class DeviceFailed(FeedFailed):
    """This host could not take the bytes or keep the serial (exit 4)."""

    exit_code = EXIT_DEVICE


class BadState(FeedFailed):
    """The ``--state`` file or the CA bundle cannot be read (exit 2)."""

    exit_code = EXIT_USAGE


class Stopped(FeedFailed):
    """SIGTERM or SIGINT came during a fetch (exit 0)."""

    exit_code = 0


_LIBC = ctypes.CDLL(None, use_errno=True)


def _log(message: str) -> None:
    click.echo(f"qrng feed: {message}", err=True)


class _Credit(click.ParamType[Any, Any]):
    """``--credit`` alone (``auto``), or a number of bits."""

    name = "bits"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or value == "auto" or isinstance(value, int):
            return value
        try:
            bits = int(value)
        except ValueError:
            self.fail(f"{value!r} is not a number of bits", param, ctx)
        if bits < 0:
            self.fail("must be at least 0", param, ctx)
        return bits


# -- the device --------------------------------------------------------------------


class Device:
    """The file entropy is written to, opened and checked before anything is fetched."""

    def __init__(self, path: str, credit: bool) -> None:
        self.path = path
        self.credit = credit
        try:
            # O_NONBLOCK: a FIFO without a reader fails at once instead of waiting
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise DeviceFailed(f"cannot open {path}: {exc.strerror}") from None
        try:
            flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
            fcntl.fcntl(self.fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
            if credit:
                self._check_credit()
        except BaseException:
            os.close(self.fd)
            raise

    def _check_credit(self) -> None:
        info = os.fstat(self.fd)
        if not feed.is_random_device(info.st_mode, info.st_rdev):
            raise DeviceFailed(f"--credit needs the kernel's random device; {self.path} is not one")
        try:  # an empty RNDADDENTROPY adds nothing, but is checked for CAP_SYS_ADMIN
            self._ioctl(feed.rand_pool_info(b"", 0))
        except OSError as exc:
            raise DeviceFailed(
                f"--credit needs CAP_SYS_ADMIN ({exc.strerror}); "
                "without --credit the bytes are mixed in without a credit"
            ) from None

    def _ioctl(self, info: bytearray) -> None:
        """RNDADDENTROPY on ``info`` in place, through libc: the kernel reads the
        bytearray itself, so no copy is left behind (``fcntl.ioctl`` copies a
        buffer under 1 KiB into its own stack buffer, which nobody zeroes)."""
        view = (ctypes.c_char * len(info)).from_buffer(info)
        try:
            done = _LIBC.ioctl(
                self.fd, ctypes.c_ulong(feed.RNDADDENTROPY), ctypes.c_void_p(ctypes.addressof(view))
            )
        finally:
            del view
        if done != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    def write(self, data: bytearray, credit: int | None) -> None:
        """Mix ``data`` in (and credit ``credit`` bits when crediting); zero it after."""
        info: bytearray | None = None
        try:
            if credit is not None:
                info = feed.rand_pool_info(data, credit)
                self._ioctl(info)
            else:
                view = memoryview(data)
                while view:
                    view = view[os.write(self.fd, view) :]
                view.release()
        except OSError as exc:
            raise DeviceFailed(f"cannot write to {self.path}: {exc.strerror}") from None
        finally:
            data[:] = bytes(len(data))
            if info is not None:
                info[:] = bytes(len(info))

    def close(self) -> None:
        os.close(self.fd)


# -- the last serial fed -----------------------------------------------------------


def _read_state(path: str | None) -> int | None:
    try:
        return read_last_serial(path)
    except click.UsageError as exc:
        raise BadState(exc.message) from None


def _save_state(path: str, accepted: feed.Accepted) -> None:
    """Replace the state file whole: a crash leaves the old or the new."""
    try:
        replace_file(Path(path), feed.state_text(accepted).encode())
    except OSError as exc:
        raise DeviceFailed(f"cannot write --state {path}: {exc.strerror}") from None


# -- one round ---------------------------------------------------------------------


class Feeder:
    """Everything a round needs, checked once: keys, credit, device, client."""

    def __init__(
        self,
        *,
        url: str,
        keys: list[PublicKey],
        ca_file: str | None,
        timeout: float,
        n: int,
        credit: int | None,
        device: Device,
        max_age: float,
        state: str | None,
        stop: Stop,
    ) -> None:
        from quantumrng.client import Client

        self.url = url
        self.keys = keys
        self.timeout = timeout
        self.n = n
        self.credit = credit
        self.device = device
        self.max_age = max_age
        self.state = state
        self.stop = stop
        self.api_key = os.environ.get("QRNG_API_KEY") or None

        def client() -> Client:
            return Client(url, api_key=self.api_key, verify=ca_file or True, timeout=timeout)

        try:
            client().close()  # a CA bundle that cannot be loaded is a usage error, now
        except ConfigError as exc:
            raise BadState(exc.message) from None
        self._client = client

    def _fetch(self) -> tuple[bytes, object]:
        """``signed_bytes`` in a thread, waited for at most ``timeout`` in all: a
        per-operation timeout does not bound DNS or an answer that trickles in.

        Each round has its own client, so a fetch left behind by a timeout
        never shares one with the next round's."""
        box: list[Any] = []

        def run() -> None:
            try:
                with self._client() as client:
                    box.append(client.signed_bytes(self.n))
            except BaseException as exc:
                box.append(exc)

        worker = threading.Thread(target=run, name="qrng-feed-fetch", daemon=True)
        worker.start()
        deadline = time.monotonic() + self.timeout
        while worker.is_alive() and not self.stop.requested:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            worker.join(min(left, 0.1))
        if not box:
            if self.stop.requested:
                raise Stopped("stopped")
            raise NoAnswer(f"{self.url} did not answer within {self.timeout:g} s")
        outcome = box.pop()
        if isinstance(outcome, ConfigError):
            raise BadState(outcome.message)
        if isinstance(outcome, QuantumRNGError):
            raise NoAnswer(f"{self.url}: {outcome.message}")
        if isinstance(outcome, BaseException):
            raise outcome
        data, signed = outcome
        return data, signed

    def round(self) -> None:
        """Fetch, check, save the serial, write: one round, or :class:`FeedFailed`."""
        last = _read_state(self.state)
        data, signed = self._fetch()
        checked = feed.check_answer(
            data,
            signed,
            keys=self.keys,
            n=self.n,
            api_key=self.api_key,
            now=time.time(),
            max_age=self.max_age,
            last_serial=last,
        )
        if isinstance(checked, feed.Refused):
            raise AnswerRefused(f"refused the answer of {self.url}: {checked.reason}")
        buffer = bytearray(data)
        del data
        try:
            if self.state is not None:  # saved first: bytes fed are never fed again
                _save_state(self.state, checked)
            self.device.write(buffer, self.credit)
        finally:
            buffer[:] = bytes(len(buffer))
        credited = "" if self.credit is None else f", credited {self.credit} bits"
        _log(
            f"mixed {self.n} bytes (serial {checked.serial}, {checked.completion_time}) "
            f"into {self.device.path}{credited}"
        )


# -- the command -------------------------------------------------------------------


class Stop:
    """Set by SIGTERM or SIGINT. The handler only stores a flag (taking a lock in a
    handler can deadlock the thread it interrupted); waits poll it every 0.1 s."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.requested = True

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def wait(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when a stop is requested."""
        deadline = time.monotonic() + seconds
        while not self.requested:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.1))


def _run_interval(feeder: Feeder, interval: float, stop: Stop) -> None:
    stop.install()
    while not stop.requested:
        started = time.monotonic()
        try:
            feeder.round()
        except FeedFailed as exc:
            if stop.requested:
                break
            if not isinstance(exc, NoAnswer | AnswerRefused):
                raise
            _log(f"{exc.message}; next round in {interval:g} s")
        stop.wait(interval - (time.monotonic() - started))
    _log("stopped")


@click.command("feed")
@service_url_option("The QuantumRNG service's base URL (https://...).")
@PUBLIC_KEY
@KEYS
@CA_FILE
@click.option("--once", is_flag=True, help="Feed once and exit (the default; for boot).")
@click.option(
    "--interval",
    type=click.FloatRange(min=1.0),
    help="Feed every S seconds until SIGTERM (a daemon).",
)
@click.option(
    "--device",
    default=feed.DEFAULT_DEVICE,
    show_default=True,
    help="Where the bytes go: the kernel's random device (a file or FIFO for tests).",
)
@click.option(
    "--bytes",
    "n",
    type=click.IntRange(1, feed.MAX_BYTES),
    default=feed.DEFAULT_BYTES,
    show_default=True,
    help="Bytes per round.",
)
@click.option(
    "--credit",
    type=_Credit(),
    is_flag=False,
    flag_value="auto",
    default=None,
    help="Credit BITS per round via RNDADDENTROPY (alone: a quarter of the bits; "
    "needs CAP_SYS_ADMIN).",
)
@click.option(
    "--max-age",
    type=click.FloatRange(min=0.0, min_open=True),
    default=feed.DEFAULT_MAX_AGE,
    show_default=True,
    help="Refuse an answer older than this, or dated this far ahead of the clock (s).",
)
@click.option(
    "--state",
    type=click.Path(dir_okay=False),
    help="File keeping the last serial fed: a serial not above it is refused.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.0, min_open=True),
    default=feed.DEFAULT_TIMEOUT,
    show_default=True,
    help="Longest a fetch may take, all included (s).",
)
def feed_command(
    url: str,
    pems: tuple[str, ...],
    keys_file: str | None,
    ca_file: str | None,
    once: bool,
    interval: float | None,
    device: str,
    n: int,
    credit: int | str | None,
    max_age: float,
    state: str | None,
    timeout: float,
) -> None:
    """Mix signed entropy from a QuantumRNG service into the kernel's pool.

    Exit: 0 fed, 1 no usable answer, 2 usage, 3 answer refused, 4 device.
    """
    if once and interval is not None:
        raise click.UsageError("give --once or --interval, not both")
    keys = pinned_keys(pems, keys_file)
    if keys is None:
        raise click.UsageError("give the service's public key: --public-key PEM or --keys JSON")
    try:
        bits = (
            None
            if credit is None
            else feed.credit_bits(n, None if credit == "auto" else int(credit))
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--credit") from None
    _read_state(state)
    stop = Stop()
    sink = Device(device, credit=bits is not None)
    try:
        feeder = Feeder(
            url=url,
            keys=keys,
            ca_file=ca_file,
            timeout=timeout,
            n=n,
            credit=bits,
            device=sink,
            max_age=max_age,
            state=state,
            stop=stop,
        )
        if interval is None:
            feeder.round()
        else:
            _run_interval(feeder, interval, stop)
    finally:
        sink.close()


COMMANDS: list[click.Command] = [feed_command]
