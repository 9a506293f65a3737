"""Scale-out: requests/s and latency of one node, two workers, the Redis pool, two nodes (issue 8).

Run: ``python bench/scale.py [--seconds S] [--rounds R] [--connections C] [--clients P]
[--quick] [--raw]``.

Four deployments of real ``qrng serve`` processes on free loopback ports, all
started at once and measured in interleaved rounds (a, b, c, d, then b, c, d,
a, ...) so that a noisy shared machine slows each alike:

a. one node, one worker, SQLite pool: the baseline;
b. one node, ``--workers 2``, SQLite pool. Goal: >= 1.6x a on ``get_bits``;
c. one node, one worker, Redis pool. Goal: >= 0.8x a ("the Redis pool within
   0.8x of SQLite per node");
d. two nodes, one worker each, on one Redis pool (their own data directories,
   the same node key), the connections split over both.

Routes: v1 ``GET /api/v1/qrng/get_bits`` and v2 ``GET /api/v2/bits?n=512``
(DRBG output); with ``--raw`` also ``/api/v2/bits?n=512&mode=raw``, which
takes a pool block per request.

The load: ``--clients`` processes, each a ``selectors`` loop over its share of
``--connections`` keep-alive HTTP/1.1 connections on raw sockets, one request
in flight per connection (closed loop), ``--warmup`` seconds not counted, then
``--seconds`` counted. A figure per deployment is the median over rounds;
its ratio is the median of the per-round ratios to a. Every run prints the CPU
seconds its load generator used, those of the server processes (workers and
children included, from ``/proc/<pid>/stat``) and those of the Redis server
(``INFO cpu``; the shared one, so other users of it count too), and the share
of the machine's cores they kept busy: on 2 cores, a client using most of a
core caps what a second worker can add. Redis keys live under a fresh
``QRNG_REDIS_KEY`` per run and are deleted at the end. Exit status 1 when any
request failed (an error answer, a reset or a timeout).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import secrets
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from quantumrng.storage.redis import key_prefix, open_url

START_TIMEOUT = 300.0  # seconds for a node to be ready (the simulator's first harvest)
SETTLE_TIMEOUT = 120.0  # seconds to wait for a full pool before measuring anyway
REQUEST_TIMEOUT = 10.0  # seconds an answer may take before it counts as failed
KEY_BYTES = 32  # the node key (pool/integrity.py)
CLK_TCK = os.sysconf("SC_CLK_TCK")

ROUTES = {
    "get_bits": "/api/v1/qrng/get_bits",
    "v2 bits": "/api/v2/bits?n=512",
}
RAW_ROUTE = ("v2 bits raw", "/api/v2/bits?n=512&mode=raw")
GOALS = {"b": 1.6, "c": 0.8}  # ratio to a; get_bits is the figure of the issue


@dataclass(frozen=True)
class NodeSpec:
    """One ``qrng serve`` process: its workers and pool; ``group`` names a shared Redis pool."""

    name: str
    workers: int
    pool: str
    group: str = ""


@dataclass(frozen=True)
class Deployment:
    """What is measured: the nodes the connections are spread over."""

    tag: str
    label: str
    nodes: tuple[str, ...]


NODES = (
    NodeSpec("sqlite-1w", 1, "sqlite"),
    NodeSpec("sqlite-2w", 2, "sqlite"),
    NodeSpec("redis-1w", 1, "redis", "c"),
    NodeSpec("redis-n1", 1, "redis", "d"),
    NodeSpec("redis-n2", 1, "redis", "d"),
)
DEPLOYMENTS = (
    Deployment("a", "1 node, 1 worker, SQLite", ("sqlite-1w",)),
    Deployment("b", "1 node, 2 workers, SQLite", ("sqlite-2w",)),
    Deployment("c", "1 node, 1 worker, Redis", ("redis-1w",)),
    Deployment("d", "2 nodes x 1 worker, Redis", ("redis-n1", "redis-n2")),
)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(port: int, path: str) -> tuple[int, bytes]:
    """GET ``path`` from 127.0.0.1 with a plain socket; (0, b"") if nothing answers.

    A socket, not ``http.client``: ``bench/http.py`` hides the standard
    package from a script run beside it.
    """
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(request.encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return 0, b""
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return (int(m.group(1)), body) if m else (0, b"")


# --- the servers -----------------------------------------------------------------------------


@dataclass
class Node:
    """A running ``qrng serve`` process (its own process group)."""

    spec: NodeSpec
    port: int
    proc: subprocess.Popen[bytes]
    log: Path


def start_node(
    spec: NodeSpec, args: argparse.Namespace, tmp: Path, redis_keys: dict[str, str], key: bytes
) -> Node:
    """Start ``spec`` on a free port; nodes of one Redis group get the same node key."""
    port = free_port()
    data = tmp / spec.name
    data.mkdir()
    fd = os.open(data / "pool.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key if spec.group else secrets.token_bytes(KEY_BYTES))
    cmd = [
        sys.executable, "-m", "quantumrng", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(spec.workers), "--data-dir", str(data), "--source", args.source,
        "--pool", spec.pool, "--log-level", "warning",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRNG_")}
    env["QRNG_MAX_CLIENT_CONNECTIONS"] = str(max(64, args.connections + 8))
    if spec.pool == "redis":
        cmd += ["--redis-url", args.redis_url]
        env["QRNG_REDIS_KEY"] = redis_keys[spec.group]
    if args.raw:
        cmd.append("--allow-uncredited-raw")
    log = tmp / f"{spec.name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp, start_new_session=True
        )
    return Node(spec, port, proc, log)


def wait_ready(node: Node) -> None:
    """Wait until ``/ready`` answers 200, then until the pool is full (the harvester idles)."""
    deadline = time.monotonic() + START_TIMEOUT
    while http_get(node.port, "/ready")[0] != 200:
        if node.proc.poll() is not None:
            raise SystemExit(
                f"{node.spec.name} exited with {node.proc.returncode}:\n{node.log.read_text()}"
            )
        if time.monotonic() > deadline:
            raise SystemExit(f"{node.spec.name} was not ready after {START_TIMEOUT:.0f} s")
        time.sleep(0.2)
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        status, body = http_get(node.port, "/api/v2/status")
        try:
            pool = json.loads(body)["pool"]
            if status != 200 or pool["blocks"] >= pool["high_water"]:
                return
        except (ValueError, KeyError, TypeError):
            return
        time.sleep(0.5)
    print(f"  note: {node.spec.name}'s pool was still filling", file=sys.stderr)


def stop_node(node: Node) -> None:
    """Stop the process group led by ``node`` (ours: started with a new session)."""
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        if node.proc.poll() is not None:
            return
        try:
            os.killpg(node.proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            node.proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def running(
    args: argparse.Namespace, tmp: Path, redis_keys: dict[str, str]
) -> Iterator[dict[str, Node]]:
    """Start every node at once, wait for all, stop all on the way out."""
    key = secrets.token_bytes(KEY_BYTES)
    nodes: dict[str, Node] = {}
    try:
        for spec in NODES:
            nodes[spec.name] = start_node(spec, args, tmp, redis_keys, key)
        for node in nodes.values():
            wait_ready(node)
        yield nodes
    finally:
        for node in nodes.values():
            stop_node(node)


def tree_cpu(root: int) -> dict[int, float]:
    """CPU seconds of ``root`` and of each live descendant, by pid, reaped children included.

    A child reaped between two samples moves its time into its parent's
    cutime/cstime, so the difference of two sums stays right.
    """
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
        stats[int(entry)] = (int(fields[1]), ticks / CLK_TCK)
    tree: dict[int, float] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in tree or pid not in stats:
            continue
        tree[pid] = stats[pid][1]
        todo.extend(child for child, (ppid, _) in stats.items() if ppid == pid)
    return tree


def cpu_by_pid(nodes: Sequence[Node]) -> dict[int, float]:
    """``tree_cpu`` of every node, merged."""
    return {pid: cpu for n in nodes for pid, cpu in tree_cpu(n.proc.pid).items()}


class RedisCpu:
    """CPU seconds of the Redis server (``INFO cpu``), or nothing when it is not used."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def __call__(self) -> float:
        info = self.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


# --- the load generator ----------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One load process: its connections' ports, the route and the shared clock marks."""

    ports: tuple[int, ...]
    path: str
    start: float  # time.monotonic(): the first request
    measure: float  # counted from here
    end: float  # to here


@dataclass
class Tally:
    """What a load process saw in the counted window."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    cpu: float = 0.0


class _Conn:
    __slots__ = ("buf", "port", "sent", "sock")

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.buf = b""
        self.sent = 0.0


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


def _answer(buf: bytes) -> tuple[int, int] | None:
    """(status, bytes) of the first whole answer in ``buf``; None if more is needed."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    m = _CONTENT_LENGTH.search(buf, 0, head_end)
    if m is None or not buf.startswith(b"HTTP/1.1 "):
        return -1, len(buf)  # no length (chunked or broken): count it and reconnect
    total = head_end + 4 + int(m.group(1))
    return (int(buf[9:12]), total) if len(buf) >= total else None


def load(job: Job, out: Connection) -> None:
    """Keep one request in flight per connection until ``job.end``; send a ``Tally``."""
    request = f"GET {job.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    tally = Tally()
    sel = selectors.DefaultSelector()
    conns = [_Conn(port) for port in job.ports]
    time.sleep(max(0.0, job.start - time.monotonic()))

    def send(conn: _Conn) -> None:
        conn.sent = time.monotonic()
        conn.sock.send(request)  # a few dozen bytes into an empty socket buffer

    def reconnect(conn: _Conn, reason: str) -> None:
        if time.monotonic() >= job.measure:
            tally.errors[reason] += 1
        sel.unregister(conn.sock)
        conn.sock.close()
        try:
            fresh = _Conn(conn.port)
        except OSError as exc:  # the server is gone: this connection ends here
            tally.errors[f"connect: {type(exc).__name__}"] += 1
            conns.remove(conn)
            return
        conn.sock, conn.buf = fresh.sock, b""
        sel.register(conn.sock, selectors.EVENT_READ, conn)
        send(conn)

    for conn in conns:
        sel.register(conn.sock, selectors.EVENT_READ, conn)
        send(conn)
    cpu0: float | None = None
    next_check = job.start + 0.5
    while (now := time.monotonic()) < job.end:
        if cpu0 is None and now >= job.measure:
            cpu0 = time.process_time()
        for key, _ in sel.select(min(job.end - now, 0.05)):
            conn = key.data
            try:
                data = conn.sock.recv(65536)
            except OSError as exc:
                reconnect(conn, type(exc).__name__)
                continue
            if not data:
                reconnect(conn, "closed by server")
                continue
            conn.buf += data
            answer = _answer(conn.buf)
            if answer is None:
                continue
            status, size = answer
            done = time.monotonic()
            if status == -1:
                reconnect(conn, "unreadable answer")
                continue
            conn.buf = conn.buf[size:]
            if job.measure <= done < job.end:
                if status == 200:
                    tally.latencies.append(done - conn.sent)
                else:
                    tally.errors[f"HTTP {status}"] += 1
            send(conn)
        if now >= next_check:
            next_check = now + 0.5
            for conn in list(conns):
                if now - conn.sent > REQUEST_TIMEOUT:
                    reconnect(conn, "timeout")
    tally.cpu = time.process_time() - (cpu0 if cpu0 is not None else time.process_time())
    for conn in conns:
        conn.sock.close()
    out.send(tally)
    out.close()


@dataclass
class Run:
    """One deployment on one route in one round."""

    requests: int
    seconds: float
    latencies: list[float]
    errors: Counter[str]
    server_cpu: dict[int, float]  # by process
    client_cpu: float
    redis_cpu: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def measure(
    nodes: Sequence[Node], path: str, args: argparse.Namespace, redis_cpu: RedisCpu | None
) -> Run:
    """Drive ``nodes`` with the load processes for one window; sample CPU at its edges."""
    ctx = multiprocessing.get_context("fork")
    ports = [nodes[i % len(nodes)].port for i in range(args.connections)]
    start = time.monotonic() + 0.3 + 0.005 * args.connections
    job_marks = (start, start + args.warmup, start + args.warmup + args.seconds)
    procs, pipes = [], []
    for c in range(args.clients):
        mine = tuple(ports[c :: args.clients])
        if not mine:
            continue
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=load, args=(Job(mine, path, *job_marks), send), daemon=True)
        proc.start()
        send.close()
        procs.append(proc)
        pipes.append(receive)
    time.sleep(max(0.0, job_marks[1] - time.monotonic()))
    server0 = cpu_by_pid(nodes)
    redis0 = redis_cpu() if redis_cpu else 0.0
    time.sleep(max(0.0, job_marks[2] - time.monotonic()))
    server1 = cpu_by_pid(nodes)
    redis1 = redis_cpu() if redis_cpu else 0.0
    tallies: list[Tally] = []
    for proc, pipe in zip(procs, pipes, strict=True):
        if not pipe.poll(REQUEST_TIMEOUT + 5):
            raise SystemExit("a load process sent no result")
        tallies.append(pipe.recv())
        proc.join(5)
    latencies = [x for t in tallies for x in t.latencies]
    errors: Counter[str] = Counter()
    for t in tallies:
        errors.update(t.errors)
    return Run(
        requests=len(latencies),
        seconds=args.seconds,
        latencies=latencies,
        errors=errors,
        server_cpu={pid: cpu - server0.get(pid, 0.0) for pid, cpu in server1.items()},
        client_cpu=sum(t.cpu for t in tallies),
        redis_cpu=redis1 - redis0,
    )


# --- the report ------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of sorted values; nan when there are none."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def split(by_pid: Counter[int]) -> str:
    """Each serving process's share of the server CPU, largest first (those above 10%)."""
    total = sum(by_pid.values())
    if total <= 0:
        return "-"
    shares = [cpu / total for _, cpu in by_pid.most_common() if cpu >= 0.1 * total]
    return "/".join(f"{100 * x:.0f}" for x in shares)


def report(route: str, runs: dict[str, list[Run]], cores: int) -> None:
    """Print one route's table: sums over rounds, the median rate, pooled percentiles."""
    print(f"\n{route}")
    header = (
        f"{'config':<30} {'requests':>9} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'errors':>6} {'srv CPU s':>9} {'split %':>7} {'srv us/req':>10} {'cli CPU s':>9} "
        f"{'redis s':>7} {'busy':>5} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    base = runs["a"]
    cost: dict[str, float] = {}
    for dep in DEPLOYMENTS:
        mine = runs[dep.tag]
        lat = sorted(x for r in mine for x in r.latencies)
        by_pid: Counter[int] = Counter()
        for r in mine:
            by_pid.update(r.server_cpu)
        wall = sum(r.seconds for r in mine)
        server = sum(by_pid.values())
        client = sum(r.client_cpu for r in mine)
        redis = sum(r.redis_cpu for r in mine)
        busy = (server + client + redis) / (wall * cores)
        requests = sum(r.requests for r in mine)
        cost[dep.tag] = server / requests if requests else float("nan")
        ratio = statistics.median(
            r.rate / b.rate if b.rate else float("nan") for r, b in zip(mine, base, strict=True)
        )
        print(
            f"{dep.tag}. {dep.label:<27} {requests:>9,} "
            f"{statistics.median(r.rate for r in mine):>8,.0f} {1e3 * percentile(lat, 0.5):>7.2f} "
            f"{1e3 * percentile(lat, 0.99):>7.2f} {sum(sum(r.errors.values()) for r in mine):>6} "
            f"{server:>9.2f} {split(by_pid):>7} {1e6 * cost[dep.tag]:>10.1f} {client:>9.2f} "
            f"{redis:>7.2f} {busy:>5.0%} "
            f"{ratio:>6.2f}"
        )
    for tag, goal in GOALS.items():
        ratio = statistics.median(
            r.rate / b.rate for r, b in zip(runs[tag], base, strict=True) if b.rate
        )
        verdict = "met" if ratio >= goal else "NOT met"
        print(
            f"  {tag}/a = {ratio:.2f} (goal >= {goal}): {verdict}; "
            f"server CPU per request {tag}/a = {cost[tag] / cost['a']:.2f}"
        )
    errors: Counter[str] = Counter()
    for mine in runs.values():
        for r in mine:
            errors.update(r.errors)
    if errors:
        print("  failed requests: " + ", ".join(f"{n} {why}" for why, n in errors.most_common()))


def delete_keys(client: Any, keys: Sequence[str]) -> int:
    """Delete every key under the runs' hash tags; return how many."""
    gone = 0
    for key in keys:
        pattern = key_prefix(key).replace("[", "\\[") + "*"
        batch = list(client.scan_iter(match=pattern, count=1000))
        if batch:
            gone += int(client.delete(*batch))
    return gone


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="counted seconds per run")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds before counting")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds a, b, c, d")
    ap.add_argument("--connections", type=int, default=32, help="keep-alive connections")
    ap.add_argument("--clients", type=int, default=2, help="load generator processes")
    ap.add_argument("--source", default="os", choices=("os", "simulator"))
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--raw", action="store_true", help="also measure mode=raw (v2 bits)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 1 s, one round")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.warmup, args.rounds = 1.0, 0.3, 1
    if min(args.seconds, args.rounds, args.connections, args.clients) <= 0 or args.warmup < 0:
        ap.error("--seconds, --rounds, --connections and --clients must be positive")
    routes = dict(ROUTES)
    if args.raw:
        routes[RAW_ROUTE[0]] = RAW_ROUTE[1]
    cores = len(os.sched_getaffinity(0))
    run_id = secrets.token_hex(6)
    redis_keys = {"c": f"qrng-bench-{run_id}-c", "d": f"qrng-bench-{run_id}-d"}
    client = open_url(args.redis_url)
    client.ping()
    redis_cpu = RedisCpu(client)
    print(
        f"{cores} cores (os.cpu_count {os.cpu_count()}), load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; source {args.source}; "
        f"{args.rounds} round(s) of {args.seconds:g} s (+{args.warmup:g} s warm-up); "
        f"{args.connections} keep-alive connections from {args.clients} load processes"
    )
    results: dict[str, dict[str, list[Run]]] = {r: {d.tag: [] for d in DEPLOYMENTS} for r in routes}
    tmp = Path(tempfile.mkdtemp(prefix="qrng-scale-"))
    try:
        with ExitStack() as stack:
            nodes = stack.enter_context(running(args, tmp, redis_keys))
            for rnd in range(args.rounds):
                order = DEPLOYMENTS[rnd % 4 :] + DEPLOYMENTS[: rnd % 4]
                for route, path in routes.items():
                    for dep in order:
                        targets = [nodes[name] for name in dep.nodes]
                        uses_redis = any(n.spec.pool == "redis" for n in targets)
                        run = measure(targets, path, args, redis_cpu if uses_redis else None)
                        results[route][dep.tag].append(run)
                        bad = sum(run.errors.values())
                        print(
                            f"  round {rnd + 1} {route:<11} {dep.tag} {run.rate:8,.0f} req/s"
                            + (f"  {bad} failed" if bad else ""),
                            flush=True,
                        )
    finally:
        deleted = delete_keys(client, list(redis_keys.values()))
        shutil.rmtree(tmp, ignore_errors=True)
    for route, runs in results.items():
        report(route, runs, cores)
    print(
        f"\nload average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"busy = (server + client + Redis CPU s) / (wall s x {cores} cores); split % = each "
        "serving process's share of the server CPU; srv us/req = server CPU per request; "
        f"{deleted} Redis keys of this run deleted"
    )
    failed = sum(sum(r.errors.values()) for runs in results.values() for rs in runs.values()
                 for r in rs)  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
    sys.exit(main())
