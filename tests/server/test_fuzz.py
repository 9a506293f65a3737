"""Property-based fuzz of the OpenAPI document against the app in-process (schemathesis).

Every generated request, valid or not, gets a documented status, content
type and body: never a 500, never an answer that breaks the schema.

Collection only builds the app over an empty memory pool (schemathesis reads
``/openapi.json`` then, and the document does not depend on the pool); the
20,000 blocks and the data directory come from a module fixture when the
tests run. (``schemathesis.pytest.from_fixture`` would defer the app too, but
schemathesis 4.32 fails on pytest 9: ``Function`` has no ``_nodeid``.)
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from tests.blocks import make_blocks
from tests.server.support import serve_memory

pytestmark = pytest.mark.slow

BLOCKS = 20_000  # many blocks keep mode=raw answering

# Created by the ``_app_data`` fixture, not at collection.
_data_dir = Path(tempfile.gettempdir()) / f"qrng-fuzz-{uuid.uuid4().hex}"
# Small limits keep each example cheap.
_served = serve_memory(
    _data_dir, blocks=0, max_json_bytes=1 << 14, max_items=500, max_bytes=1 << 18
)
# A size above a configured maximum is rejected with 413, a rejection like 400/422.
_config = schemathesis.Config.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [400, 401, 403, 404, 405, 413, 422, 429, 503]
            }
        }
    }
)
schema = schemathesis.openapi.from_asgi("/openapi.json", _served.app, config=_config)
# What collection left behind, checked by a test below.
_AT_COLLECTION = (_served.node.pool.level().blocks, _data_dir.exists())

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.negative_data_rejection,
]
#: ANU's legacy API answers a bad parameter 200 ``{"success": false}``, as ANU's did.
ACCEPTS_BAD_DATA = {"/API/jsonI.php"}


@pytest.fixture(scope="module", autouse=True)
def _app_data() -> Iterator[None]:
    """Give the app its data directory and fill its pool (simulator blocks, no credit)."""
    _data_dir.mkdir()
    _served.node.pool.put(make_blocks(BLOCKS, source="simulator", credited_bits=0))
    try:
        yield
    finally:
        _served.client.close()
        _served.node.close()
        shutil.rmtree(_data_dir, ignore_errors=True)


def test_collection_builds_no_blocks_and_no_directory() -> None:
    assert _AT_COLLECTION == (0, False)
    assert 0 < _served.node.pool.level().blocks <= BLOCKS and _data_dir.is_dir()


@schema.parametrize()
@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case) -> None:
    if case.operation.path in ACCEPTS_BAD_DATA:
        body = case.call_and_validate(
            checks=[c for c in CHECKS if c is not checks.negative_data_rejection]
        )
        assert body.status_code != 200 or body.json()["success"] in (True, False)
        return
    case.call_and_validate(checks=CHECKS)
