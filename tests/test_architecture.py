"""The invariants of docs/ARCHITECTURE.md, checked on the imports of the package itself."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import quantumrng
from quantumrng import sources
from quantumrng.provenance import SOURCE_KINDS

PACKAGE = Path(quantumrng.__file__).parent


def _module_name(path: Path) -> str:
    if not path.is_relative_to(PACKAGE.parent):
        return path.stem
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, at any depth (lazy imports inside functions too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def _ours(path: Path) -> set[str]:
    return {m for m in _imports(path) if m == "quantumrng" or m.startswith("quantumrng.")}


def _files(*names: str) -> list[Path]:
    found: list[Path] = []
    for name in names:
        target = PACKAGE / name
        found.extend(sorted(target.rglob("*.py")) if target.is_dir() else [target])
    return found


#: Modules that import nothing of ours: what the lowest layers may lean on.
LEAVES = {"quantumrng.errors", "quantumrng.forksafe"}


def test_leaf_modules_import_nothing_of_ours() -> None:
    for name in LEAVES:
        path = PACKAGE / (name.split(".", 1)[1] + ".py")
        assert _ours(path) == set(), name


def _within(module: str, names: set[str] | tuple[str, ...]) -> bool:
    return any(module == n or module.startswith(n + ".") for n in names)


def test_the_drbg_imports_nothing_of_ours_but_the_leaf_modules() -> None:
    ours = _ours(PACKAGE / "drbg.py")
    assert ours, "the check must see the DRBG's imports"
    assert all(m == "quantumrng" or _within(m, LEAVES) for m in ours), sorted(ours)


@pytest.mark.parametrize(
    "path", _files("formats.py", "pool", "engine.py", "health.py", "conditioning.py"), ids=str
)
def test_formats_pools_and_the_engine_know_no_http(path: Path) -> None:
    imported = set(_imports(path))
    web = ("starlette", "uvicorn", "httpx", "quantumrng.server", "quantumrng.client")
    assert not any(_within(m, web) for m in imported), path


@pytest.mark.parametrize("path", _files("sources"), ids=str)
def test_sources_never_write_to_the_pool(path: Path) -> None:
    ours = _ours(path)
    writers = ("quantumrng.pool", "quantumrng.engine", "quantumrng.harvester", "quantumrng.node")
    assert not any(_within(m, writers) for m in ours), path


def test_every_source_kind_has_exactly_one_factory() -> None:
    assert set(sources.FACTORIES) == set(SOURCE_KINDS)


def test_the_import_checks_see_a_violation(tmp_path: Path) -> None:
    """Flawed control: a module importing the pool, and Starlette lazily, is caught."""
    bad = tmp_path / "control.py"
    bad.write_text("from quantumrng.pool import open_pool\n\ndef f():\n    import starlette\n")
    imported = set(_imports(bad))
    assert _within("quantumrng.pool.open_pool", ("quantumrng.pool",))
    assert "quantumrng.pool" in imported
    assert "starlette" in imported
