"""pollen at /pollen on a real `qrng serve` over TLS: pollen's answers, known-answer vectors
from pollen's own tests, and the real pollinate in its testing mode."""

from __future__ import annotations

import hashlib
import re
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from quantumrng.server.keys import KeyStore
from quantumrng.server.pollen import PATH, USE_POLLINATE, answer_lines
from tests.server.process import Server, run_server
from tests.tools import debian_program

#: pollen_test.go: PorkChopSha512 is $(echo -n "pork chop sandwiches" | sha512sum).
PORK_CHOP = "pork chop sandwiches"
PORK_CHOP_SHA512 = (
    "a75751ccd71ba00d7b6c3b74cc0c02373f3f26c14dfe47afd580b0d87bf9fd8c"
    "ebc73ea29b1cae15586e0d118922342ea7e94d0cb73a0f918d7d8c7ec065e873"
)
DILBERT_RANDOM = b"nine" * 16  # pollen_test.go's 64 canned "random" bytes
LINE = re.compile(r"[0-9a-f]{128}")
POLLINATE_TIMEOUT = 60  # seconds for one pollinate run
SEED_OUT = 64  # bytes pollinate writes in testing mode with --binary: a SHA-512
TIGHT_QUOTA = 64  # bytes a day: one pollen answer


class Tls:
    """The module's server, its CA file and a client context trusting it."""

    def __init__(self, server: Server, ca_file: Path, verify: ssl.SSLContext, key: str) -> None:
        self.server = server
        self.ca_file = ca_file
        self.verify = verify
        self.tight_key = key

    @property
    def url(self) -> str:
        return self.server.base_url + PATH


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tls]:
    tmp = tmp_path_factory.mktemp("pollen")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path, ca_path = tmp / "cert.pem", tmp / "key.pem", tmp / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    ca.cert_pem.write_to_path(str(ca_path))
    verify = ssl.create_default_context()
    ca.configure_trust(verify)
    (tmp / "data").mkdir()
    tight, _ = KeyStore(tmp / "data" / "keys.sqlite3").create("tight", {"drbg"}, None, TIGHT_QUOTA)
    flags = ("--tls-cert", str(cert_path), "--tls-key", str(key_path))
    with run_server(tmp, *flags, verify=verify) as server:
        yield Tls(server, ca_path, verify, tight)


@pytest.fixture(scope="module")
def client(tls: Tls) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=tls.server.base_url, verify=tls.verify, timeout=10) as c:
        yield c


def lines(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text.endswith("\n")
    out = response.text.split("\n")[:-1]
    assert len(out) == 2 and all(LINE.fullmatch(line) for line in out)
    return out


# -- the protocol -----------------------------------------------------------------------------


def test_answer_lines_match_pollens_canned_vector() -> None:
    proof, seed = answer_lines(PORK_CHOP.encode(), DILBERT_RANDOM).decode().splitlines()
    assert proof == PORK_CHOP_SHA512
    assert seed == hashlib.sha512(PORK_CHOP.encode() + DILBERT_RANDOM).hexdigest()
    assert seed != hashlib.sha512(DILBERT_RANDOM).hexdigest()


def test_posted_challenge_first_line_is_its_sha512(client: httpx.Client) -> None:
    proof, _ = lines(client.post(PATH, data={"challenge": PORK_CHOP}))
    assert proof == PORK_CHOP_SHA512


def test_query_challenge_is_answered_as_pollen_does(client: httpx.Client) -> None:
    proof, _ = lines(client.get(PATH, params={"challenge": PORK_CHOP}))
    assert proof == PORK_CHOP_SHA512


def test_form_value_wins_over_the_query_as_gos_form_value(client: httpx.Client) -> None:
    r = client.post(PATH, params={"challenge": "from the query"}, data={"challenge": PORK_CHOP})
    assert lines(r)[0] == PORK_CHOP_SHA512


def test_same_challenge_gets_a_fresh_seed_each_time(client: httpx.Client) -> None:
    answers = [
        lines(client.post(PATH, data={"challenge": "the bassomatic '76"})) for _ in range(50)
    ]
    assert len({proof for proof, _ in answers}) == 1
    assert len({seed for _, seed in answers}) == 50


def test_chained_challenges_get_unique_proofs_and_seeds(client: httpx.Client) -> None:
    challenge, proofs, seeds = "the bassomatic '76", set(), set()
    for _ in range(50):
        proof, seed = lines(client.post(PATH, data={"challenge": challenge}))
        assert proof == hashlib.sha512(challenge.encode()).hexdigest()
        proofs.add(proof)
        seeds.add(seed)
        challenge = seed
    assert len(proofs) == 50 and len(seeds) == 50


def test_answers_are_not_cached_and_name_their_entropy(client: httpx.Client) -> None:
    r = client.post(PATH, data={"challenge": "x"})
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-qrng-mode"] == "drbg" and r.headers["x-qrng-source"] == "os"


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("GET", {}),
        ("POST", {}),
        ("POST", {"data": {"challenge": ""}}),
        ("POST", {"data": {"other": "x"}}),
        ("POST", {"content": b"challenge=abc", "headers": {"content-type": "text/plain"}}),
    ],
    ids=["get-none", "post-none", "empty", "other-field", "not-a-form"],
)
def test_no_challenge_is_pollens_400_asking_for_pollinate(
    client: httpx.Client, method: str, kwargs: dict[str, object]
) -> None:
    r = client.request(method, PATH, **kwargs)  # type: ignore[arg-type]
    assert r.status_code == 400
    assert r.text == USE_POLLINATE + "\n"
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["x-content-type-options"] == "nosniff"


def test_a_refusal_is_plain_text_with_retry_after(client: httpx.Client, tls: Tls) -> None:
    headers = {"x-api-key": tls.tight_key}
    lines(client.post(PATH, data={"challenge": "a"}, headers=headers))
    r = client.post(PATH, data={"challenge": "b"}, headers=headers)
    assert r.status_code == 429 and r.headers["content-type"] == "text/plain; charset=utf-8"
    assert "quota" in r.text and r.text.endswith("\n") and int(r.headers["retry-after"]) >= 1


# -- the real pollinate -----------------------------------------------------------------------


def pollinate(*args: str) -> subprocess.CompletedProcess[bytes]:
    program = debian_program("pollinate", "pollinate")
    return subprocess.run(
        [program, "--testing", "--strict", "--binary", *args],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=POLLINATE_TIMEOUT,
        check=False,
    )


def test_pollinate_seeds_from_pollen_over_tls(tls: Tls) -> None:
    run = pollinate("-s", tls.url, "-c", f"--cacert {tls.ca_file}")
    assert run.returncode == 0, run.stderr.decode()
    assert len(run.stdout) == SEED_OUT
    again = pollinate("-s", tls.url, "-c", f"--cacert {tls.ca_file}")
    assert again.returncode == 0 and again.stdout != run.stdout


def test_pollinate_fails_against_a_route_that_is_not_pollen(tls: Tls) -> None:
    not_pollen = tls.server.base_url + "/api/v1/qrng/get_bits"
    run = pollinate("-s", not_pollen, "-c", f"--cacert {tls.ca_file}")
    assert run.returncode == 1 and run.stdout == b""


def test_pollinate_refuses_the_server_without_trusting_its_ca(tls: Tls) -> None:
    run = pollinate("-s", tls.url)
    assert run.returncode == 1 and run.stdout == b""
