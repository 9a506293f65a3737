"""Reader of NIST CAVP ``.rsp`` response files (DRBGVS, CAVS 14.3).

A file is a run of sections: ``[AES-256 use df]`` opens one, ``[Name = value]``
lines set its parameters, and each ``COUNT = n`` record lists ``Name = hex``
fields in order (names repeat: two ``AdditionalInput`` per record).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

VECTORS = Path(__file__).parent / "vectors"


@dataclass(frozen=True)
class Record:
    """One ``COUNT`` record with its section's name and parameters."""

    path: str
    section: str
    params: Mapping[str, str]
    count: int
    fields: tuple[tuple[str, bytes], ...]

    def all(self, name: str) -> list[bytes]:
        """Return every value of field ``name`` in file order."""
        return [value for key, value in self.fields if key == name]

    def one(self, name: str) -> bytes:
        """Return the only value of field ``name``; fail if it is absent or repeated."""
        values = self.all(name)
        if len(values) != 1:
            raise ValueError(f"{self.path} COUNT {self.count}: {len(values)} values of {name}")
        return values[0]


def _split(line: str) -> tuple[str, str]:
    key, sep, value = line.partition("=")
    if not sep:
        raise ValueError(f"not a 'name = value' line: {line!r}")
    return key.strip(), value.strip()


def read_rsp(name: str) -> Iterator[Record]:
    """Yield every record of ``tests/vectors/<name>``; unknown line shapes raise."""
    section, params = "", dict[str, str]()
    count: int | None = None
    fields: list[tuple[str, bytes]] = []

    def record() -> Record:
        assert count is not None
        return Record(name, section, MappingProxyType(dict(params)), count, tuple(fields))

    for raw in (VECTORS / name).read_text(encoding="ascii").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if count is not None and (line.startswith("[") or line.startswith("COUNT")):
            yield record()
            count, fields = None, []
        if line.startswith("[") and line.endswith("]"):
            inner = line[1:-1]
            if "=" in inner:
                key, value = _split(inner)
                params[key] = value
            else:
                section, params = inner, {}
        elif line.startswith("COUNT"):
            count = int(_split(line)[1])
        elif count is not None:
            key, value = _split(line)
            fields.append((key, bytes.fromhex(value)))
        else:
            raise ValueError(f"{name}: field outside a record: {line!r}")
    if count is not None:
        yield record()
