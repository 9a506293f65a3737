"""translate_errors: every mapped driver error becomes our class, with no stored value shown."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator

import pytest
import redis
import redis.exceptions

from quantumrng.errors import EntropyUnavailable, QuantumRNGError, Unavailable
from quantumrng.storage.errors import driver_errors, translate_errors

SECRET = "c0ffee5ecret"


def _subclasses(cls: type[Exception]) -> Iterator[type[Exception]]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _subclasses(sub)


SQLITE_ERRORS = sorted(set(_subclasses(sqlite3.Error)), key=lambda c: c.__name__)
REDIS_ERRORS = sorted(
    {c for c in _subclasses(redis.exceptions.RedisError) if c.__module__.startswith("redis")},
    key=lambda c: c.__qualname__,
)


def _redis_error(cls: type[Exception]) -> Exception:
    """An instance carrying SECRET (cluster redirections parse "<slot> <host:port>")."""
    try:
        return cls(f"ERR wrong argument {SECRET} for redis://:{SECRET}@db:6379")
    except ValueError:
        return cls(f"7 {SECRET}:6379")


def test_the_table_maps_each_driver_to_unavailable() -> None:
    table = driver_errors()
    assert table[sqlite3.Error] is Unavailable
    assert table[redis.exceptions.RedisError] is Unavailable


def test_redis_joins_the_table_only_once_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "redis.exceptions")
    assert list(driver_errors()) == [sqlite3.Error]


@pytest.mark.parametrize("cls", SQLITE_ERRORS, ids=lambda c: c.__name__)
def test_sqlite_errors_are_unavailable_quoting_sqlite(cls: type[Exception]) -> None:
    with pytest.raises(Unavailable) as err, translate_errors("the test store"):
        raise cls("disk I/O error")
    assert type(err.value) is driver_errors()[sqlite3.Error]
    assert err.value.message == "the test store failed: disk I/O error"
    assert isinstance(err.value.__cause__, cls)


@pytest.mark.parametrize("cls", REDIS_ERRORS, ids=lambda c: c.__qualname__)
def test_redis_errors_are_unavailable_naming_only_the_class(cls: type[Exception]) -> None:
    with pytest.raises(QuantumRNGError) as err, translate_errors("the Redis pool"):
        raise _redis_error(cls)
    assert type(err.value) is Unavailable
    assert err.value.message == f"the Redis pool failed: {cls.__name__}"
    assert err.value.__cause__ is None and err.value.__suppress_context__


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO t (u, n) VALUES (?, 1)",  # UNIQUE constraint failed
        "INSERT INTO t (u, n) VALUES ('x', ?)",  # STRICT: TEXT into an INTEGER column
        "INSERT INTO t (u, n, c) VALUES ('y', 1, ?)",  # CHECK constraint failed
        "INSERT INTO missing VALUES (?)",  # no such table
    ],
)
def test_real_sqlite_errors_never_show_bound_values(statement: str) -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (u TEXT UNIQUE, n INTEGER, c TEXT CHECK (length(c) < 3)) STRICT")
    conn.execute("INSERT INTO t (u, n) VALUES (?, 1)", (SECRET,))
    with pytest.raises(Unavailable) as err, translate_errors("the test store"):
        conn.execute(statement, (SECRET,))
    assert err.value.message.startswith("the test store failed: ")
    assert SECRET not in err.value.message
    conn.close()


def test_a_real_redis_error_shows_neither_credentials_nor_address() -> None:
    client = redis.Redis.from_url(
        f"redis://:{SECRET}@127.0.0.1:1/0", socket_connect_timeout=1.0, retry=None
    )
    with pytest.raises(Unavailable) as err, translate_errors("the Redis pool"):
        client.ping()
    assert err.value.message == "the Redis pool failed: ConnectionError"
    client.close()


@pytest.mark.parametrize(
    "error", [ValueError(SECRET), EntropyUnavailable("short"), KeyError("k"), OSError(5, "io")]
)
def test_other_errors_pass_through_untouched(error: Exception) -> None:
    with pytest.raises(type(error)) as err, translate_errors("the test store"):
        raise error
    assert err.value is error
