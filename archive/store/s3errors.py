"""botocore errors as the S3 store's ArchiveErrors."""

from __future__ import annotations

from botocore.exceptions import ClientError

from archive.errors import ArchiveError

NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchVersion"}
NO_LOCK = {
    "NoSuchObjectLockConfiguration",
    "ObjectLockConfigurationNotFoundError",
    "NoSuchObjectLegalHold",
}
PRECONDITION = {"PreconditionFailed", "ConditionalRequestConflict", "412"}
UNAVAILABLE = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "Throttling",
    "ThrottlingException",
    "RequestTimeTooSkewed",
}


def error_code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def http_status(e: ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_not_found(e: ClientError) -> bool:
    return error_code(e) in NOT_FOUND or (http_status(e) == 404 and error_code(e) != "NoSuchBucket")


def translate(e: Exception, action: str) -> ArchiveError:
    """A botocore error as an ArchiveError (the caller raises it `from e`)."""
    if isinstance(e, ClientError):
        code, status = error_code(e), http_status(e)
        message = e.response.get("Error", {}).get("Message", "")
        detail = f"S3 store cannot {action}: {code or status} {message}".rstrip()
        if status >= 500 or code in UNAVAILABLE or code == "NoSuchBucket":
            return ArchiveError(detail, code="store_unavailable")
        return ArchiveError(detail, code="store_refused")
    return ArchiveError(f"S3 store cannot {action}: {e}", code="store_unavailable")
