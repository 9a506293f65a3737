"""``qrng keys create | list | revoke``, through the ``qrng`` group."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from quantumrng.cli import cli
from quantumrng.server.keys import KeyStore, RedisKeyStore
from quantumrng.storage.redis import open_url
from tests.cli.support import qrng
from tests.conftest import make_settings
from tests.pool.support import delete_prefix, new_prefix, redis_url

KEY_RE = re.compile(r"qrng_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


@pytest.fixture(autouse=True)
def _no_qrng_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("QRNG_")]:
        monkeypatch.delenv(key)


def keys(tmp_path: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "keys", *args])


def test_create_list_revoke(tmp_path: Path) -> None:
    made = keys(
        tmp_path,
        "create", "--name", "ci", "--scopes", "drbg,raw", "--rate", "5",
        "--daily-bytes", "1000000",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    match = KEY_RE.fullmatch(key)
    assert match is not None
    assert "will not be shown again" in made.stderr
    store = KeyStore(make_settings(tmp_path).keys_path)
    record = store.verify(key)
    assert record is not None and record.scopes == frozenset({"drbg", "raw"})
    assert (record.rate, record.daily_bytes) == (5.0, 1_000_000)

    table = keys(tmp_path, "list")
    assert table.exit_code == 0
    assert record.id in table.stdout and "ci" in table.stdout and "drbg,raw" in table.stdout
    assert key not in table.output and match.group(2) not in table.output

    revoked = keys(tmp_path, "revoke", "ci")
    assert revoked.exit_code == 0 and record.id in revoked.stdout
    assert store.verify(key) is None

    listed = json.loads(keys(tmp_path, "list", "--json").stdout)
    assert [(k["id"], k["name"], k["scopes"]) for k in listed] == [
        (record.id, "ci", ["drbg", "raw"])
    ]
    assert listed[0]["revoked_at"] is not None and "hash" not in listed[0]


def test_an_empty_store_lists_nothing(tmp_path: Path) -> None:
    listed = keys(tmp_path, "list")
    assert listed.exit_code == 0 and listed.stdout == ""
    assert listed.stderr.strip() == "no API keys"


@pytest.mark.parametrize(
    "args",
    [
        ["revoke", "nobody"],
        ["create", "--name", "bad\tname"],
        ["create", "--name", "x", "--scopes", "drbg,root"],
        ["create", "--name", "x", "--rate", "-1"],
        ["create", "--name", "x", "--rate", "nan"],
        ["create", "--name", "x", "--daily-bytes", "lots"],
        ["create"],
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path: Path, args: list[str]) -> None:
    result = keys(tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "Traceback" not in result.output


def test_duplicate_name_is_a_clean_error(tmp_path: Path) -> None:
    assert keys(tmp_path, "create", "--name", "ci").exit_code == 0
    again = keys(tmp_path, "create", "--name", "ci")
    assert again.exit_code == 2
    assert again.output.strip() == "Error: an active key named 'ci' exists"


def test_a_damaged_store_is_one_line(tmp_path: Path) -> None:
    make_settings(tmp_path).keys_path.write_bytes(b"this is not an SQLite database " * 256)
    result = keys(tmp_path, "list")
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: cannot open the key store")
    assert "not a database" in result.output and len(result.output.splitlines()) == 1


def test_errors_from_the_real_command_are_one_qrng_line(tmp_path: Path) -> None:
    out = qrng(tmp_path, "keys", "revoke", "nobody")
    assert out.returncode == 2 and out.stdout == b""
    lines = out.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qrng: error:"), out.stderr


def test_with_pool_redis_keys_live_in_redis_not_on_the_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, prefix = redis_url(), new_prefix()
    monkeypatch.setenv("QRNG_REDIS_KEY", prefix)
    try:
        made = keys(tmp_path, "create", "--name", "shared", "--rate", "5", "--pool", "redis",
                    "--redis-url", url)  # fmt: skip
        assert made.exit_code == 0, made.output
        key = made.stdout.strip()
        store = RedisKeyStore(open_url(url), prefix=prefix)
        record = store.verify(key)
        assert record is not None and record.name == "shared" and record.rate == 5.0
        assert not make_settings(tmp_path).keys_path.exists()
        assert keys(tmp_path, "list").stderr.strip() == "no API keys"  # SQLite: none there
        listed = keys(tmp_path, "list", "--json", "--pool", "redis", "--redis-url", url)
        assert [k["id"] for k in json.loads(listed.stdout)] == [record.id]
        revoked = keys(tmp_path, "revoke", "shared", "--pool", "redis", "--redis-url", url)
        assert revoked.exit_code == 0 and record.id in revoked.stdout
        assert store.verify(key) is None
        store.close()
    finally:
        delete_prefix(prefix)


def test_an_unreachable_redis_is_one_line_without_the_password(tmp_path: Path) -> None:
    url = "redis://:hunter2secret@127.0.0.1:1/0"
    result = keys(tmp_path, "list", "--pool", "redis", "--redis-url", url)
    assert result.exit_code == 2
    assert result.output.strip() == "Error: the key store in Redis failed: ConnectionError"
