"""The HTTP service: one Starlette ASGI app (v1, v2, operations, docs) and its runner.

``create_app`` builds the app; ``quantumrng.server.run.serve`` runs it on
uvicorn; ``quantumrng.cli.serve`` is ``qrng serve``.
Imported lazily, so ``qrng --help`` does not load the web stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quantumrng.server.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from quantumrng.server.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
