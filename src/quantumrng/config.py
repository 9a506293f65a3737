"""Settings: the one place every tunable lives.

Precedence, lowest first: the defaults below < a TOML config file
(``--config``, ``QRNG_CONFIG`` or ``<data_dir>/qrng.toml``) < environment
variables ``QRNG_<NAME>`` < command-line flags (``overrides``).
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import math
import os
import socket
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantumrng.errors import ConfigError
from quantumrng.provenance import SOURCE_KINDS

__all__ = [
    "ENV_PREFIX",
    "DRAND_SCHEMES",
    "POOL_BACKENDS",
    "Network",
    "Settings",
    "default_data_dir",
    "load_settings",
    "trusted_networks",
]

ENV_PREFIX = "QRNG_"
#: ``QRNG_*`` variables that are credentials read where they are used, not settings.
ENV_CREDENTIALS = ("API_KEY", "MQTT_PASSWORD")
POOL_BACKENDS = ("sqlite", "redis", "memory")
#: drand's signature schemes served under ``/drand/``: quicknet's (the default) and the chained one.
DRAND_SCHEMES = ("bls-unchained-g1-rfc9380", "pedersen-bls-chained")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=16)
def trusted_networks(spec: str) -> tuple[Network, ...]:
    """Parse ``forwarded_allow_ips``: comma-separated addresses or networks, or ``*``.

    Raises ``ConfigError`` naming the first entry that is neither; host
    names are refused because the address a connection comes from is
    compared, never a name.
    """
    networks: list[Network] = []
    for entry in (part.strip() for part in spec.split(",")):
        if not entry:
            continue
        if entry == "*":
            networks += [ipaddress.IPv4Network("0.0.0.0/0"), ipaddress.IPv6Network("::/0")]
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ConfigError(
                f"forwarded_allow_ips: {entry!r} is not an IP address, a network or '*'"
            ) from None
    return tuple(networks)


def default_data_dir() -> Path:
    """Return ``$XDG_DATA_HOME/quantumrng`` (``~/.local/share/quantumrng``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "quantumrng"


@dataclass(frozen=True)
class Settings:
    """All settings of a QuantumRNG node. Field names double as env/TOML keys."""

    # --- entropy source -----------------------------------------------------
    source: str = "simulator"
    qubits: int = 16  # measured qubits per circuit
    shots: int = 4096  # shots per job (capped by the backend's maximum); IBM witnesses take a share
    simulator_seed: int | None = None  # fixed seed for reproducible tests only
    ibm_backend: str | None = None  # None: least busy operational backend
    ibm_secrets: Path | None = None  # the prototype's YAML file with ``ibm_api_key``
    ibm_channel: str | None = None
    ibm_instance: str | None = None
    ibm_timeout: float = 900.0  # seconds a job may wait in the queue
    ibm_entropy: float = 0.5  # assessed min-entropy per bit of hardware qubits
    file_path: Path = Path("/dev/hwrng")
    file_entropy: float = 0.5  # assessed min-entropy per bit of the device
    file_read_bytes: int = 4096  # bytes read from the device per harvest
    file_timeout: float = 10.0  # seconds a device read may block before it is a source error
    os_read_bytes: int = 8192  # bytes read from the kernel per harvest
    # --- pool ---------------------------------------------------------------
    data_dir: Path = field(default_factory=default_data_dir)
    pool: str = "sqlite"
    redis_url: str = "redis://127.0.0.1:6379/0"  # redis://, rediss:// (TLS), redis+sentinel://
    redis_key: str = "quantumrng"  # key prefix, used as a hash tag: {redis_key}:...
    redis_ca_file: Path | None = None  # CA bundle for rediss:// (None: the system's)
    redis_cert_file: Path | None = None  # client certificate for rediss:// (mutual TLS)
    redis_key_file: Path | None = None  # its private key
    redis_sentinels: str = ""  # host:port,host:port of Sentinels (instead of redis+sentinel://)
    redis_master: str = ""  # the master's service name the Sentinels watch
    redis_cluster: bool = False  # redis_url names a node of a Redis Cluster
    pool_low_water: int = 256  # blocks; the harvester refills below this
    pool_high_water: int = 2048  # blocks; the harvester stops at this
    harvest_backoff_max: float = 300.0  # seconds between retries at most
    harvest_lease_seconds: float = 10.0  # harvest leader's lease; another node leads after it
    node_name: str = ""  # this node's name in status and leases; "": the host name
    # --- entropy accounting (SP 800-90B §3.1, §4.3) ---------------------------
    assessment_samples: int = 1_000_000  # samples per initial assessment (at least 1,000,000)
    health_persistent_failures: int = 3  # failed harvests in a row that stop the source
    require_operator_reset: bool = False  # after a persistent failure: wait for `qrng health reset`
    allow_uncredited_raw: bool = False  # serve mode=raw from zero-credit sources (demos, tests)
    # --- DRBG ---------------------------------------------------------------
    reseed_bytes: int = 1 << 30  # output bytes between reseeds
    reseed_seconds: float = 300.0  # seconds between reseeds
    # --- server -------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 1
    max_bytes: int = 1 << 30  # largest bulk (raw/streamed) request
    max_json_bytes: int = 1 << 20  # largest request answered inside JSON
    max_items: int = 100_000  # largest n for integers, floats, uuids, ...
    require_auth: bool | None = None  # None: on unless bound to loopback
    rate_limit: float = 0.0  # requests/s per anonymous client; 0: unlimited
    rate_burst: int = 0  # bucket size; 0: max(1, 2 * rate)
    daily_bytes: int = 0  # bytes/day per anonymous client; 0: unlimited
    tls_cert: Path | None = None
    tls_key: Path | None = None
    log_level: str = "info"
    # --- hardening ----------------------------------------------------------
    forwarded_allow_ips: str = ""  # proxies trusted for X-Forwarded-*; "": none (headers ignored)
    public_status: bool = False  # /api/v2/status and /metrics without a key under require_auth
    max_header_bytes: int = 16_384  # request line and headers, all together (431 beyond)
    header_timeout: float = 10.0  # seconds to send a request's headers, and idle before one
    max_connections: int = 4096  # open connections per worker; more are closed at once
    max_client_connections: int = 64  # open connections per client address (IPv6: per /64)
    pool_key_file: Path | None = None  # block integrity key; None: <data_dir>/pool.key
    # --- verifiable randomness ----------------------------------------------
    signing_key_file: Path | None = None  # Ed25519 key (PEM); None: <data_dir>/signing/
    result_retention_days: float = 30.0  # signed results stay retrievable at least this long
    log_head_seconds: float = 1.0  # longest a log entry waits for a signed tree head
    beacon_period: int = 60  # seconds between beacon pulses; 0: no beacon
    beacon_key_file: Path | None = None  # RSA key (PEM); None: <data_dir>/beacon/
    beacon_cert_file: Path | None = None  # its X.509 certificate (PEM); with beacon_key_file
    public_url: str = ""  # base URL clients reach this service at; "": http://host:port
    # --- compatibility ------------------------------------------------------
    drand_period: int = 3  # seconds between drand rounds (quicknet's); 0: no drand beacon
    drand_scheme: str = "bls-unchained-g1-rfc9380"  # or "pedersen-bls-chained"
    # --- quantum evidence ---------------------------------------------------
    witness_share: float = 0.1  # share of a hardware job's shots spent on witness circuits
    witness_confidence: float = 0.99  # confidence a witness must exceed its classical bound at
    witness_required: bool = True  # a harvest whose witness failed is not credited
    # --- dashboard ----------------------------------------------------------
    dashboard: bool = True  # the operator's page at /; its data follows /api/v2/status's auth
    dashboard_battery_seconds: float = 300.0  # least seconds between SP 800-22 runs; 0: none

    def __post_init__(self) -> None:
        if self.source not in SOURCE_KINDS:
            raise ConfigError(f"source must be one of {', '.join(SOURCE_KINDS)}")
        if self.pool not in POOL_BACKENDS:
            raise ConfigError(f"pool must be one of {', '.join(POOL_BACKENDS)}")
        if not 1 <= self.qubits <= 1024:
            raise ConfigError("qubits must be between 1 and 1024")
        if self.shots < 1:
            raise ConfigError("shots must be positive")
        for name in ("ibm_entropy", "file_entropy"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in (0, 1] bits per bit")
        if self.assessment_samples < 1_000_000:
            raise ConfigError(
                "assessment_samples must be at least 1000000 (SP 800-90B §3.1.1)"
            )
        if self.health_persistent_failures < 1:
            raise ConfigError("health_persistent_failures must be at least 1")
        if not 0 < self.pool_low_water < self.pool_high_water:
            raise ConfigError("need 0 < pool_low_water < pool_high_water")
        if not 0 < self.port < 65536:
            raise ConfigError("port must be between 1 and 65535")
        if self.workers < 1:
            raise ConfigError("workers must be at least 1")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls_cert and tls_key go together")
        for name in ("reseed_bytes", "max_bytes", "max_json_bytes", "max_items"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive")
        for name in (
            "reseed_seconds",
            "ibm_timeout",
            "file_timeout",
            "harvest_backoff_max",
            "harvest_lease_seconds",
        ):
            if not 0 < getattr(self, name) < math.inf:
                raise ConfigError(f"{name} must be a positive number of seconds")
        for name in ("rate_limit", "rate_burst", "daily_bytes"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ConfigError(f"{name} must be zero (unlimited) or positive")
        if not 0 < self.result_retention_days < math.inf:
            raise ConfigError("result_retention_days must be a positive number of days")
        if not 0 < self.log_head_seconds <= 3600:
            raise ConfigError("log_head_seconds must be in (0, 3600]")
        if not (self.beacon_period == 0 or 1 <= self.beacon_period <= 86_400):
            raise ConfigError("beacon_period must be 0 (no beacon) or 1 to 86400 seconds")
        if (self.beacon_key_file is None) != (self.beacon_cert_file is None):
            raise ConfigError("beacon_key_file and beacon_cert_file go together")
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise ConfigError("public_url must start with http:// or https://")
        if not (self.drand_period == 0 or 1 <= self.drand_period <= 86_400):
            raise ConfigError("drand_period must be 0 (no drand beacon) or 1 to 86400 seconds")
        if self.drand_scheme not in DRAND_SCHEMES:
            raise ConfigError(f"drand_scheme must be one of {', '.join(DRAND_SCHEMES)}")
        if not 0 < self.witness_share <= 0.5:
            raise ConfigError("witness_share must be in (0, 0.5]")
        if not 0.5 <= self.witness_confidence < 1:
            raise ConfigError("witness_confidence must be in [0.5, 1)")
        if str(self.data_dir) in ("", "."):
            raise ConfigError("data_dir must name a directory")
        if not 1024 <= self.max_header_bytes <= 1 << 20:
            raise ConfigError("max_header_bytes must be between 1024 and 1048576")
        if not 0 < self.header_timeout < math.inf:
            raise ConfigError("header_timeout must be a positive number of seconds")
        if not 1 <= self.max_client_connections <= self.max_connections:
            raise ConfigError("need 1 <= max_client_connections <= max_connections")
        trusted_networks(self.forwarded_allow_ips)
        if not self.redis_key or any(c in self.redis_key for c in "{}"):
            raise ConfigError("redis_key must be non-empty and hold no braces")
        if (self.redis_cert_file is None) != (self.redis_key_file is None):
            raise ConfigError("redis_cert_file and redis_key_file go together")
        if bool(self.redis_sentinels.strip()) != bool(self.redis_master.strip()):
            raise ConfigError("redis_sentinels and redis_master go together")
        if self.redis_cluster and self.redis_sentinels.strip():
            raise ConfigError("redis_cluster and redis_sentinels exclude each other")
        if len(self.node_name) > 64 or not self.node_name.isprintable():
            raise ConfigError("node_name must be at most 64 printable characters")
        battery = self.dashboard_battery_seconds
        if not (battery == 0 or 10 <= battery <= 86_400):
            raise ConfigError("dashboard_battery_seconds must be 0 (no battery) or 10 to 86400")

    @property
    def pool_path(self) -> Path:
        """The SQLite pool file."""
        return self.data_dir / "pool.sqlite3"

    @property
    def pool_key_path(self) -> Path:
        """The file of the node key that tags pool blocks (outside the pool's store)."""
        return self.pool_key_file if self.pool_key_file is not None else self.data_dir / "pool.key"

    @property
    def keys_path(self) -> Path:
        """The SQLite file of API keys (hashes only) and usage counters."""
        return self.data_dir / "keys.sqlite3"

    @property
    def ledger_path(self) -> Path:
        """The SQLite file of signed results, the transparency log and beacon pulses."""
        return self.data_dir / "ledger.sqlite3"

    @property
    def signing_dir(self) -> Path:
        """Where generated Ed25519 service keys and their public key list are kept."""
        return self.data_dir / "signing"

    @property
    def base_url(self) -> str:
        """The URL clients reach this service at (``public_url``, else from host and port)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.tls_cert is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def node(self) -> str:
        """This node's name: ``node_name``, else the host name."""
        return self.node_name or socket.gethostname()

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with ``changes`` applied and validated."""
        return load_settings(overrides=changes, base=self)


def _coerce(name: str, hint: Any, value: Any) -> Any:
    """Convert a TOML or environment value to the field's declared type."""
    if value is None:
        return None
    args = typing.get_args(hint)
    optional = type(None) in args
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        inner = [a for a in args if a is not type(None)]
        hint = inner[0]
    if optional and isinstance(value, str) and value.strip().lower() in ("", "none", "null"):
        return None
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if hint is float:
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(value)
            return number
        if hint is Path:
            if not str(value).strip():
                raise ValueError(value)
            return Path(value).expanduser()
        if hint is str:
            return str(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"setting {name!r} has an invalid value") from None
    raise ConfigError(f"setting {name!r} has an unsupported type")  # pragma: no cover


def _from_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    section = data.get("quantumrng", data)
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path} has no [quantumrng] table")
    return section


def load_settings(
    overrides: dict[str, Any] | None = None,
    *,
    config_file: Path | str | None = None,
    environ: typing.Mapping[str, str] | None = None,
    base: Settings | None = None,
) -> Settings:
    """Build settings from defaults, config file, environment and ``overrides``.

    ``overrides`` holds command-line values; entries that are None are
    ignored so that unset flags do not mask lower layers. With ``base``,
    only ``overrides`` are applied on top of it.
    """
    hints = typing.get_type_hints(Settings)
    names = {f.name for f in dataclasses.fields(Settings)}
    values: dict[str, Any] = {}

    if base is None:
        env = os.environ if environ is None else environ
        layers: list[dict[str, Any]] = []
        path = config_file or env.get(ENV_PREFIX + "CONFIG")
        data_dir = (overrides or {}).get("data_dir") or env.get(ENV_PREFIX + "DATA_DIR")
        if path is None:
            candidate = Path(data_dir or default_data_dir()).expanduser() / "qrng.toml"
            if candidate.is_file():
                path = candidate
        if path is not None:
            layers.append(_from_file(Path(path).expanduser()))
        layers.append(
            {
                key[len(ENV_PREFIX) :].lower(): val
                for key, val in env.items()
                if key.startswith(ENV_PREFIX)
                and key[len(ENV_PREFIX) :] not in ("CONFIG", *ENV_CREDENTIALS)
            }
        )
        for layer in layers:
            for key, val in layer.items():
                if key not in names:
                    raise ConfigError(f"unknown setting {key!r}")
                values[key] = _coerce(key, hints[key], val)
    else:
        values = {f.name: getattr(base, f.name) for f in dataclasses.fields(Settings)}

    for key, val in (overrides or {}).items():
        if key not in names:
            raise ConfigError(f"unknown setting {key!r}")
        if val is not None:
            values[key] = _coerce(key, hints[key], val)
    return Settings(**values)
