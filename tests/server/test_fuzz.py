"""Property-based fuzz of the OpenAPI document against the app in-process (schemathesis).

Every generated request, valid or not, gets a documented status, content
type and body: never a 500, never an answer that breaks the schema.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from tests.server.support import serve_memory

pytestmark = pytest.mark.slow

# Small limits keep each example cheap; many blocks keep mode=raw answering.
_data_dir = Path(tempfile.mkdtemp(prefix="qrng-fuzz-"))
atexit.register(shutil.rmtree, _data_dir, ignore_errors=True)
_served = serve_memory(
    _data_dir,
    blocks=20_000,
    max_json_bytes=1 << 14,
    max_items=500,
    max_bytes=1 << 18,
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

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.negative_data_rejection,
]


@schema.parametrize()
@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=CHECKS)
