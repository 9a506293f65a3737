"""Every error QuantumRNG raises, each with the HTTP status it maps to.

    QuantumRNGError
     ├── ConfigError               (500) bad settings
     ├── InvalidRequest            (400) malformed argument
     │    └── ValidationError      (422) well-formed but out of range
     ├── PayloadTooLarge           (413)
     ├── AuthenticationError       (401)
     ├── PermissionDenied          (403)
     ├── NotFound                  (404)
     ├── MethodNotAllowed          (405)
     ├── RequestTimeout            (408) headers not sent in time
     ├── RequestHeadersTooLarge    (431) request line and headers over the limit
     ├── RateLimited               (429, Retry-After)
     ├── UncreditedRaw             (409) raw output of a zero-credit source
     └── Unavailable               (503, Retry-After)
          ├── EntropyUnavailable   pool cannot supply what was asked
          ├── NotSeeded            DRBG has no seed material (fail closed)
          │    └── ReseedRequired  DRBG reached its reseed interval
          ├── HealthTestFailure    SP 800-90B continuous test failed
          │    └── SourceFailed     persistent failure: the source is stopped
          ├── SelfTestFailure      a power-on known-answer test failed
          ├── LeaseLost            a write needs a lease this process does not hold
          └── SourceError          entropy source failed
               ├── RepeatedHarvest  a device repeated an earlier harvest
               ├── SourceAuthError
               ├── SourceNetworkError
               └── SourceTimeout

Messages never carry secrets: no tokens, keys, pool bytes or DRBG state.
One handler (``server.errors``) renders any of these as
``{"error": {"code": ..., "message": ...}}``; the client turns such an answer
back into the class (:func:`error_class`); the CLI prints the message.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar

__all__ = [
    "BY_CODE",
    "BY_STATUS",
    "AuthenticationError",
    "ConfigError",
    "EntropyUnavailable",
    "HealthTestFailure",
    "InvalidRequest",
    "LeaseLost",
    "MethodNotAllowed",
    "NotFound",
    "NotSeeded",
    "PayloadTooLarge",
    "PermissionDenied",
    "QuantumRNGError",
    "RateLimited",
    "RepeatedHarvest",
    "RequestHeadersTooLarge",
    "RequestTimeout",
    "ReseedRequired",
    "SelfTestFailure",
    "SourceAuthError",
    "SourceError",
    "SourceFailed",
    "SourceNetworkError",
    "SourceTimeout",
    "Unavailable",
    "UncreditedRaw",
    "ValidationError",
    "error_class",
]


class QuantumRNGError(Exception):
    """Base class of every QuantumRNG error."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.headers = dict(headers or {})


class ConfigError(QuantumRNGError):
    """Raised when a setting is missing, malformed or contradicts another."""

    code = "config_error"


class InvalidRequest(QuantumRNGError):
    """Raised when an argument is malformed (not a number, unknown name)."""

    status = 400
    code = "invalid_request"


class ValidationError(InvalidRequest):
    """Raised when an argument is well-formed but outside what is allowed."""

    status = 422
    code = "validation_error"


class PayloadTooLarge(QuantumRNGError):
    """Raised when a request asks for more than the configured maximum."""

    status = 413
    code = "payload_too_large"


class AuthenticationError(QuantumRNGError):
    """Raised when a request needs an API key and has no valid one."""

    status = 401
    code = "unauthenticated"


class PermissionDenied(QuantumRNGError):
    """Raised when a valid key lacks the scope a request needs."""

    status = 403
    code = "forbidden"


class NotFound(QuantumRNGError):
    """Raised when no route or object has the name asked for."""

    status = 404
    code = "not_found"


class MethodNotAllowed(QuantumRNGError):
    """Raised when a route exists but not for that HTTP method."""

    status = 405
    code = "method_not_allowed"


class RequestTimeout(QuantumRNGError):
    """Raised when a connection does not send a request's headers in time."""

    status = 408
    code = "request_timeout"


class RequestHeadersTooLarge(QuantumRNGError):
    """Raised when a request's line and headers exceed the limit (RFC 6585 §5)."""

    status = 431
    code = "request_header_fields_too_large"


class RateLimited(QuantumRNGError):
    """Raised when a client is over its rate limit or daily byte quota."""

    status = 429
    code = "rate_limited"


class Unavailable(QuantumRNGError):
    """Raised when randomness cannot be served now; output stops (fail closed)."""

    status = 503
    code = "unavailable"


class EntropyUnavailable(Unavailable):
    """Raised when the pool holds fewer blocks than a take asks for."""

    code = "entropy_unavailable"


class NotSeeded(Unavailable):
    """Raised when the DRBG has no seed material; it never falls back."""

    code = "not_seeded"


class ReseedRequired(NotSeeded):
    """Raised by the DRBG when its reseed counter reached the limit."""

    code = "reseed_required"


class HealthTestFailure(Unavailable):
    """Raised when a harvest fails an SP 800-90B continuous health test."""

    code = "health_test_failure"


class SourceFailed(HealthTestFailure):
    """Raised while a source is in the persistent failure state (SP 800-90B §4.3):
    nothing new is harvested, raw output stops and the DRBG is not reseeded."""

    code = "source_failed"


class UncreditedRaw(QuantumRNGError):
    """Raised when raw output is asked of a source that earns no entropy credit
    (the simulator, ``os``) and the operator has not set ``allow_uncredited_raw``."""

    status = 409
    code = "raw_not_credited"


class SelfTestFailure(Unavailable):
    """Raised when a power-on self-test (a CTR_DRBG known answer) failed: nothing is served."""

    code = "self_test_failure"


class LeaseLost(Unavailable):
    """Raised when a write needs a lease (the harvest leader's) that this process does not
    hold: it expired, another holder took it, or another holder has it; nothing was written."""

    code = "lease_lost"


class SourceError(Unavailable):
    """Raised when an entropy source cannot deliver a harvest."""

    code = "source_error"


class RepeatedHarvest(SourceError):
    """Raised when a device returns a harvest identical to an earlier one (a stuck
    source, or a regular file read again): counted as a failed health test."""

    code = "repeated_harvest"


class SourceAuthError(SourceError):
    """Raised when the quantum provider rejects the credentials."""

    code = "source_auth_error"


class SourceNetworkError(SourceError):
    """Raised when the quantum provider cannot be reached."""

    code = "source_network_error"


class SourceTimeout(SourceError):
    """Raised when a quantum job waits in the queue longer than allowed, or a device
    read blocks past ``file_timeout``."""

    code = "source_timeout"


def _by_code() -> dict[str, type[QuantumRNGError]]:
    found: dict[str, type[QuantumRNGError]] = {}
    todo: list[type[QuantumRNGError]] = [QuantumRNGError]
    while todo:
        cls = todo.pop(0)
        found.setdefault(cls.code, cls)
        todo.extend(cls.__subclasses__())
    return found


#: Every error class by its ``code``: what an error answer's body names.
BY_CODE: Mapping[str, type[QuantumRNGError]] = MappingProxyType(_by_code())

#: The class an HTTP status stands for when nothing more specific is known
#: (Starlette's own 404/405, an answer whose code this version does not know).
BY_STATUS: Mapping[int, type[QuantumRNGError]] = MappingProxyType(
    {
        cls.status: cls
        for cls in (
            InvalidRequest,
            ValidationError,
            PayloadTooLarge,
            AuthenticationError,
            PermissionDenied,
            NotFound,
            MethodNotAllowed,
            RequestTimeout,
            RequestHeadersTooLarge,
            RateLimited,
            UncreditedRaw,
            Unavailable,
        )
    }
)


def error_class(status: int, code: object = None) -> type[QuantumRNGError]:
    """Return the class of an error answer: by ``code``, else by ``status``."""
    if isinstance(code, str) and code in BY_CODE:
        return BY_CODE[code]
    return BY_STATUS.get(status, QuantumRNGError)
