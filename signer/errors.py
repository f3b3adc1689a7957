"""One error root for hocba; the HTTP layer turns these into problem+json.

Request errors (4xx) are the caller's fault and change nothing. Dependency errors
(5xx/503) are ours or a dependency's (TSA down, store refused) and are retryable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # no import of the archive for a cold `hocba verify`
    from archive.errors import ArchiveError


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class HocbaError(Exception):
    """Root of every error hocba raises on purpose."""

    status: int = 500
    code: str = "internal_error"
    title: str = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        status: int | None = None,
        title: str | None = None,
        errors: list[FieldError] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if title is not None:
            self.title = title
        self.errors = list(errors or [])

    def problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://hocba.example/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if self.errors:
            body["errors"] = [{"field": e.field, "message": e.message} for e in self.errors]
        return body


class RequestError(HocbaError):
    status = 400
    code = "bad_request"
    title = "Bad request"


class InvalidInput(RequestError):
    status = 422
    code = "invalid_input"
    title = "Unprocessable input"


class PdfRejected(RequestError):
    status = 400
    code = "pdf_malformed"
    title = "PDF rejected"


class NotFound(RequestError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(RequestError):
    status = 409
    code = "conflict"
    title = "Conflict"


class Gone(RequestError):
    status = 410
    code = "gone"
    title = "Gone"


class Unauthorized(RequestError):
    status = 401
    code = "unauthorized"
    title = "Unauthorized"


class Forbidden(RequestError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class CertificateNotAllowed(RequestError):
    status = 422
    code = "certificate_not_allowed"
    title = "Certificate not allowed by the policy"


class DependencyError(HocbaError):
    """A dependency (TSA, OCSP, HSM, store, index) failed; retry later."""

    status = 503
    code = "dependency_unavailable"
    title = "A dependency is unavailable"


class IntegrityError(HocbaError):
    """Stored bytes do not match their name, or a lock is not what was asked for."""

    status = 500
    code = "integrity_error"
    title = "Integrity error"


class ConfigError(HocbaError):
    """Bad settings or policy files; stops start-up."""

    code = "config_error"
    title = "Configuration error"


# Archive (store, index, package) error codes -> the API problem each one is. A code not
# listed is a dependency failure (503), under the caller's default code if it gives one.
_ARCHIVE_PROBLEMS: dict[str, tuple[type[HocbaError], str]] = {
    "stale_revision": (Conflict, "stale_revision"),
    "record_exists": (Conflict, "record_exists"),
    "idempotency_conflict": (Conflict, "idempotency_conflict"),
    "supersedes_mismatch": (InvalidInput, "supersedes_mismatch"),
    "supersedes_not_found": (InvalidInput, "supersedes_not_found"),
    "share_link_not_found": (NotFound, "share_link_not_found"),
    "share_link_expired": (Gone, "share_link_expired"),
    "share_link_revoked": (Gone, "share_link_revoked"),
    "package_hash_mismatch": (IntegrityError, "integrity_error"),
}


def from_archive(e: ArchiveError, detail: str | None = None, *,
                 default_code: str | None = None) -> HocbaError:
    """The API problem for an archive error: `raise from_archive(e, ...) from e`."""
    cls, code = _ARCHIVE_PROBLEMS.get(e.code, (DependencyError, default_code or e.code))
    return cls(detail or e.detail, code=code)
