"""The error tree: each error carries its google.rpc code and HTTP status, so routes never build error JSON."""

from __future__ import annotations


class BatchlineError(Exception):
    code = 13  # google.rpc.Code
    status = "INTERNAL"
    http_status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_status(self) -> dict:
        """The google.rpc.Status of this error (code and message only)."""
        return {"code": self.code, "message": self.message}


class Cancelled(BatchlineError):
    code, status, http_status = 1, "CANCELLED", 499


class InvalidArgument(BatchlineError):
    code, status, http_status = 3, "INVALID_ARGUMENT", 400


class DeadlineExceeded(BatchlineError):
    code, status, http_status = 4, "DEADLINE_EXCEEDED", 504


class NotFound(BatchlineError):
    code, status, http_status = 5, "NOT_FOUND", 404


class AlreadyExists(BatchlineError):
    code, status, http_status = 6, "ALREADY_EXISTS", 409


class PermissionDenied(BatchlineError):
    code, status, http_status = 7, "PERMISSION_DENIED", 403


class PayloadTooLarge(BatchlineError):
    """A request body over the server's limit: INVALID_ARGUMENT, sent with HTTP 413."""

    code, status, http_status = 3, "INVALID_ARGUMENT", 413


class ResourceExhausted(BatchlineError):
    code, status, http_status = 8, "RESOURCE_EXHAUSTED", 429


class FailedPrecondition(BatchlineError):
    # AutoML answers FAILED_PRECONDITION with HTTP 400 (google.rpc maps it to 400).
    code, status, http_status = 9, "FAILED_PRECONDITION", 400


class Unimplemented(BatchlineError):
    code, status, http_status = 12, "UNIMPLEMENTED", 501


class Internal(BatchlineError):
    code, status, http_status = 13, "INTERNAL", 500


def describe(exc: BaseException) -> str:
    """An unexpected exception for a user's eyes: its kind and what went wrong, without the server's file paths
    (an OSError's text names the file it failed on)."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"
