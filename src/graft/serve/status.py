"""TF Serving's error codes and the HTTP status each maps to (``{"error": ...}`` bodies)."""

from __future__ import annotations

from graft.errors import GraftError

# As TF Serving's http_server.cc maps canonical error codes to HTTP statuses.
HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}


class ServingError(GraftError, RuntimeError):
    """A request failed with a TF Serving error code (``INVALID_ARGUMENT``, ``NOT_FOUND`` ...).

    Args:
        code: a key of ``HTTP_STATUS``.
        message: what was wrong and what is accepted, ending with ``Received: ...``.
        retry_after: seconds for a ``Retry-After`` header (overload, loading).
    """

    def __init__(self, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


def code_for(exc: BaseException) -> str:
    """The error code a failed model load is reported with in the status endpoint."""
    from graft.errors import ChecksumError, ManifestError, UnsafeModelError

    if isinstance(exc, ServingError):
        return exc.code
    if isinstance(exc, ChecksumError):
        return "DATA_LOSS"
    if isinstance(exc, UnsafeModelError):
        return "PERMISSION_DENIED"
    if isinstance(exc, ManifestError | ValueError):
        return "INVALID_ARGUMENT"
    if isinstance(exc, FileNotFoundError):
        return "NOT_FOUND"
    return "UNKNOWN"
