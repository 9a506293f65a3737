"""The OpenAPI 3.1 document, built from the same API families the app serves.

``/openapi.json`` documents every :class:`~quantumrng.server.routing.Endpoint`
of the families (``routing``), so it cannot drift from what is served.
``/docs`` is a self-contained page (no CDN) that lists the operations and
can try them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from quantumrng.provenance import SOURCE_KINDS
from quantumrng.server.routing import Api, Endpoint, Handler

__all__ = ["ERROR_SCHEMA", "SOURCE_SCHEMA", "build_document", "docs_api", "envelope"]

_DESCRIPTIONS = {
    400: "Malformed parameter.",
    401: "An API key is needed and none valid was sent.",
    403: "The API key lacks the scope this needs.",
    404: "No such resource.",
    409: "mode=raw from a source that earns no entropy credit (allow_uncredited_raw is off).",
    413: "More than the configured maximum was asked for.",
    422: "A parameter is well-formed but out of range.",
    425: "The round is not emitted yet (drand's Too Early).",
    429: "Over the rate limit or the daily byte quota; see Retry-After.",
    503: "No randomness can be served now (fail closed); see Retry-After.",
}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "additionalProperties": False,
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}

SOURCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Provenance of the entropy behind the answer; `simulator` carries none.",
    "required": ["kind", "quantum", "credited_bits", "harvests"],
    "properties": {
        "kind": {"type": "string", "enum": list(SOURCE_KINDS)},
        "quantum": {"type": "boolean"},
        "credited_bits": {"type": "integer", "minimum": 0},
        "seeded_at": {"type": "number"},
        "reseeds": {"type": "integer"},
        "harvests": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["harvest_id", "harvested_at"],
                "properties": {
                    "harvest_id": {"type": "string"},
                    "backend": {"type": ["string", "null"]},
                    "job_id": {"type": ["string", "null"]},
                    "harvested_at": {"type": "number"},
                    "qubits": {"type": "integer"},
                    "shots": {"type": "integer"},
                    "witness": {
                        "type": "object",
                        "description": "The harvest's physics witness verdict (Mermin/CHSH).",
                        "required": ["kind", "value", "bound", "stderr", "shots", "status"],
                        "properties": {
                            "kind": {"type": "string", "enum": ["mermin", "chsh"]},
                            "value": {"type": "number"},
                            "bound": {"type": "number"},
                            "stderr": {"type": "number"},
                            "shots": {"type": "integer"},
                            "confidence": {"type": "number"},
                            "p_classical": {"type": "number"},
                            "settings_commitment": {"type": "string"},
                            "status": {"enum": ["passed", "failed", "simulated"]},
                        },
                    },
                    "witnesses": {"type": "array", "items": {"type": "object"}},
                },
            },
        },
    },
}


def envelope(data: Mapping[str, Any]) -> dict[str, Any]:
    """Return the schema of a v2 answer whose ``data`` has schema ``data``."""
    return {
        "type": "object",
        "required": ["data", "mode", "source"],
        "properties": {
            "data": dict(data),
            "mode": {"type": "string", "enum": ["drbg", "raw"]},
            "source": {"$ref": "#/components/schemas/Source"},
        },
    }


def _operation(e: Endpoint) -> dict[str, Any]:
    error: dict[str, Any] = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    if e.error_content:
        error = {ctype: {"schema": dict(s)} for ctype, s in e.error_content.items()}
    responses: dict[str, Any] = {
        "200": {
            "description": "OK",
            "content": {ctype: {"schema": dict(s)} for ctype, s in e.content.items()},
        }
    }
    for status in sorted(e.errors):
        responses[str(status)] = {"description": _DESCRIPTIONS[status], "content": error}
    responses["default"] = {"description": "Error.", "content": error}
    op: dict[str, Any] = {
        "operationId": e.operation_id,
        "summary": e.summary,
        "tags": [e.tag],
        "parameters": [p.openapi() for p in e.params],
        "responses": responses,
    }
    if e.description:
        op["description"] = e.description
    if e.secured:
        keys: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]
        op["security"] = keys if e.key_required else [{}, *keys]
    return op


def build_document(apis: Sequence[Api], version: str) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of the documented routes of ``apis``."""
    paths: dict[str, dict[str, Any]] = {}
    for api in apis:
        for path, e in api.paths():
            if e.documented:
                for method in e.methods:
                    paths.setdefault(path, {})[method.lower()] = _operation(e)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "QuantumRNG",
            "version": version,
            "description": (
                "Random numbers whose entropy comes from quantum measurements: "
                "a CTR_DRBG (SP 800-90A) seeded from a health-tested, conditioned "
                "entropy pool (`mode=drbg`), or the pool's conditioned entropy "
                "itself (`mode=raw`). Every answer names the source of its "
                "entropy; `simulator` output carries no quantum entropy."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA, "Source": SOURCE_SCHEMA},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }


_STATIC = resources.files("quantumrng.server") / "static"
_DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _static(name: str, media_type: str) -> Handler:
    body = (_STATIC / name).read_bytes()
    headers = {"content-security-policy": _DOCS_CSP, "x-content-type-options": "nosniff"}

    async def asset(request: Request) -> Response:
        return Response(body, media_type=media_type, headers=headers)

    return asset


def docs_api(apis: Sequence[Api], version: str) -> Api:
    """Return ``/openapi.json``, ``/docs`` and its assets, documenting ``apis`` and them."""
    spec = b""

    async def openapi(request: Request) -> Response:
        return Response(spec, media_type="application/json")

    mine = [
        Endpoint(
            "/openapi.json",
            openapi,
            "openapi",
            "This OpenAPI 3.1 document.",
            "docs",
            content={"application/json": {"type": "object", "required": ["openapi", "paths"]}},
        ),
        Endpoint(
            "/docs",
            _static("docs.html", "text/html"),
            "docs",
            "Interactive documentation: every operation, with a form to try it.",
            "docs",
            content={"text/html": {"type": "string"}},
        ),
        Endpoint(
            "/docs/docs.js",
            _static("docs.js", "text/javascript"),
            "docs_js",
            "",
            "docs",
            documented=False,
        ),
        Endpoint(
            "/docs/docs.css",
            _static("docs.css", "text/css"),
            "docs_css",
            "",
            "docs",
            documented=False,
        ),
    ]
    docs = Api("", tuple(mine))
    spec = orjson.dumps(build_document([*apis, docs], version))
    return docs
