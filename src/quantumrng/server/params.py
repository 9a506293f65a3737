"""Query and path parameters: one declarative spec parsed and documented alike.

A :class:`Param` says what a parameter is (kind, bounds, default); the same
object parses the request and writes its OpenAPI schema, so the two never
disagree. A malformed value is ``InvalidRequest`` (400), a well-formed one out
of range is ``ValidationError`` (422), and a size above a configured maximum
is ``PayloadTooLarge`` (413). Messages name the parameter, never echo input.

Numbers have one strict ASCII grammar (:data:`_INT`, :data:`_NUMBER`): an
optional sign, digits ``0-9``, for floats an optional fraction and exponent
(RFC 8259 §6's number, also allowing a ``+`` and leading zeros). ``float()`` and
``int()`` alone would also take other scripts' digits, ``_`` separators,
surrounding whitespace and ``inf``/``nan``. A query or path whose
percent-escapes decode to invalid UTF-8 is refused (400) before parsing:
Starlette would silently turn such bytes into U+FFFD.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote_to_bytes

from starlette.datastructures import QueryParams

from quantumrng.errors import InvalidRequest, PayloadTooLarge, ValidationError

__all__ = ["MAX_INT_DIGITS", "Param", "parse_path", "parse_query", "require_utf8"]

Kind = Literal["int", "bigint", "float", "enum", "str", "bool"]

MAX_INT_DIGITS = 1300  # decimal digits of a big bound (~4300 bits), bounds parsing work
_SIGN = "[+-]?"
_DIGITS = "[0-9]+"  # ASCII only: \d and int() take every script's digits
_INT = re.compile(_SIGN + _DIGITS)
_NUMBER = re.compile(rf"{_SIGN}{_DIGITS}(?:\.{_DIGITS})?(?:[eE]{_SIGN}{_DIGITS})?")
_SMALL_INT_DIGITS = 19  # an "int" parameter fits in 64 bits
_BOOLS = {"true": True, "false": False}  # JSON's literals, as OpenAPI's boolean is written


@dataclass(frozen=True, slots=True)
class Param:
    """One request parameter: how to parse it and how to document it."""

    name: str
    kind: Kind
    description: str
    default: Any = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    too_large: bool = False  # above ``maximum`` is 413 (a size), not 422
    choices: tuple[str, ...] = ()
    max_length: int | None = None
    location: Literal["query", "path"] = "query"

    def parse(self, text: str) -> Any:
        """Return the typed value of ``text`` or raise the fitting error."""
        if self.kind == "enum":
            if text not in self.choices:
                raise InvalidRequest(f"{self.name} must be one of {', '.join(self.choices)}")
            return text
        if self.kind == "bool":
            if text not in _BOOLS:
                raise InvalidRequest(f"{self.name} must be true or false")
            return _BOOLS[text]
        if self.kind == "str":
            if self.max_length is not None and len(text) > self.max_length:
                raise ValidationError(f"{self.name} must be at most {self.max_length} characters")
            return text
        value: int | float
        if self.kind == "float":
            if not _NUMBER.fullmatch(text):
                raise InvalidRequest(f"{self.name} must be a decimal number such as -1.5e3")
            value = float(text)
            if not math.isfinite(value):
                raise ValidationError(f"{self.name} must be finite")
        else:
            digits = _SMALL_INT_DIGITS if self.kind == "int" else MAX_INT_DIGITS
            if not _INT.fullmatch(text):
                raise InvalidRequest(f"{self.name} must be an integer")
            if len(text.lstrip("+-")) > digits:
                if self.too_large and not text.startswith("-"):
                    raise PayloadTooLarge(f"{self.name} must be at most {self._show_max()}")
                raise ValidationError(f"{self.name} has more than {digits} digits")
            value = int(text)
        self.check_range(value)
        return value

    def check_range(self, value: float) -> None:
        """Raise when ``value`` lies outside ``[minimum, maximum]``."""
        if self.minimum is not None and value < self.minimum:
            raise ValidationError(f"{self.name} must be at least {_show(self.minimum)}")
        if self.maximum is not None and value > self.maximum:
            message = f"{self.name} must be at most {self._show_max()}"
            raise PayloadTooLarge(message) if self.too_large else ValidationError(message)

    def _show_max(self) -> str:
        return _show(self.maximum) if self.maximum is not None else "the configured maximum"

    def schema(self) -> dict[str, Any]:
        """Return the JSON Schema (OpenAPI 3.1) of this parameter's value."""
        out: dict[str, Any]
        if self.kind == "enum":
            out = {"type": "string", "enum": list(self.choices)}
        elif self.kind == "bool":
            out = {"type": "boolean"}
        elif self.kind == "str":
            out = {"type": "string"}
            if self.max_length is not None:
                out["maxLength"] = self.max_length
        else:
            out = {"type": "number" if self.kind == "float" else "integer"}
            if self.minimum is not None:
                out["minimum"] = self.minimum
            if self.maximum is not None:
                out["maximum"] = self.maximum
        if self.default is not None:
            out["default"] = self.default
        return out

    def openapi(self) -> dict[str, Any]:
        """Return the OpenAPI Parameter Object."""
        return {
            "name": self.name,
            "in": self.location,
            "required": self.required or self.location == "path",
            "description": self.description,
            "schema": self.schema(),
        }


def _show(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def require_utf8(raw: bytes, where: str) -> None:
    """Refuse a raw query string or path that is not UTF-8 once percent-decoded (400).

    Cheap when there is nothing to decode: only a ``%`` or a non-ASCII byte
    can make invalid UTF-8. Decoding the whole string is decoding each
    value: ``&`` and ``=`` are ASCII, never inside a multi-byte sequence.
    """
    if b"%" in raw or not raw.isascii():
        try:
            unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest(f"the {where} is not valid UTF-8 once percent-decoded") from None


def parse_query(
    query: QueryParams, params: Sequence[Param], *, strict: bool = True
) -> dict[str, Any]:
    """Return ``{name: value}`` for ``params``; ``strict`` refuses unknown names."""
    if strict:
        known = {p.name for p in params}
        for key in query:
            if key not in known:
                expected = ", ".join(sorted(known)) or "none"
                raise InvalidRequest(f"unknown parameter; this endpoint takes: {expected}")
    out: dict[str, Any] = {}
    for p in params:
        values = query.getlist(p.name)
        if len(values) > 1:
            raise InvalidRequest(f"{p.name} is given more than once")
        if values:
            out[p.name] = p.parse(values[0])
        elif p.required:
            raise InvalidRequest(f"{p.name} is required")
        else:
            out[p.name] = p.default
    return out


def parse_path(path_params: Mapping[str, Any], params: Sequence[Param]) -> dict[str, Any]:
    """Return the typed values of path parameters."""
    return {p.name: p.parse(str(path_params[p.name])) for p in params}
