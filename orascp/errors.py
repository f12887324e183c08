"""Define the exceptions orascp raises and the exit codes they map to.

The tree::

    OrascpError
    ├── InvalidReferenceError     a reference that breaks the grammar (exit 2)
    ├── UsageError                flags that contradict each other (exit 2)
    ├── InvalidContentError       a manifest, descriptor or layout that is malformed
    ├── NotFoundError             a tag, digest or layout that does not exist
    ├── AlreadyExistsError        content the target already holds (the engine ignores it)
    ├── UnsupportedError          an operation a target cannot do
    ├── SizeLimitError            metadata larger than the configured limit
    ├── VerificationError         bytes that do not match their descriptor
    │   ├── DigestMismatchError
    │   └── SizeMismatchError
    ├── RegistryError             an error answer from a registry (method, url, status, codes)
    │   ├── RegistryNotFoundError 404 (also a NotFoundError)
    │   └── AuthenticationError   401 or 403
    ├── NetworkError              the registry could not be reached or stopped answering
    │   └── TLSError              its certificate could not be verified
    └── CopyError                 any of the above, tagged with the side and operation

Every error carries a short kebab-case ``reference`` and an optional ``hint``; rendering is left to
the CLI, so nothing here knows about terminals.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "AlreadyExistsError",
    "AuthenticationError",
    "CopyError",
    "DigestMismatchError",
    "ErrorDetail",
    "ExitStatus",
    "InvalidContentError",
    "InvalidReferenceError",
    "NetworkError",
    "NotFoundError",
    "Origin",
    "OrascpError",
    "RegistryError",
    "RegistryNotFoundError",
    "SizeLimitError",
    "SizeMismatchError",
    "TLSError",
    "UnsupportedError",
    "UsageError",
    "VerificationError",
    "quote",
]


class ExitStatus(enum.IntEnum):
    """Enumerate the documented process exit codes."""

    OK = 0
    ERROR = 1
    USAGE = 2
    INTERRUPTED = 130  # 128 + SIGINT, as shells report it
    TERMINATED = 143  # 128 + SIGTERM


class Origin(enum.Enum):
    """Name the side of a copy an error came from."""

    SOURCE = "source"
    DESTINATION = "destination"


class OrascpError(Exception):
    """Base class of every error orascp raises on purpose."""

    reference = "orascp-error"
    # Set when the failed request was already retried as often as the policy allows, so that
    # an outer retry (a whole blob) does not multiply the attempts.
    exhausted = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class InvalidReferenceError(OrascpError):
    """Report a reference that does not follow the grammar."""

    reference = "invalid-reference"


class UsageError(OrascpError):
    """Report flags or arguments that cannot be used together."""

    reference = "usage"


class InvalidContentError(OrascpError):
    """Report malformed manifests, descriptors, or OCI layouts."""

    reference = "invalid-content"


class NotFoundError(OrascpError):
    """Report a tag, digest or layout that does not exist."""

    reference = "not-found"


class AlreadyExistsError(OrascpError):
    """Report content that a target already holds."""

    reference = "already-exists"


class UnsupportedError(OrascpError):
    """Report an operation a target does not support."""

    reference = "unsupported"


class SizeLimitError(OrascpError):
    """Report metadata that exceeds the configured size limit."""

    reference = "size-limit"


class VerificationError(OrascpError):
    """Report bytes that do not match the descriptor they were fetched for."""

    reference = "verification-failed"


class DigestMismatchError(VerificationError):
    """Report content whose digest differs from the expected one."""

    reference = "digest-mismatch"


class SizeMismatchError(VerificationError):
    """Report content whose length differs from the expected size."""

    reference = "size-mismatch"


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """Hold one entry of a distribution-spec error body."""

    code: str
    message: str


class RegistryError(OrascpError):
    """Report an error answer from a registry."""

    reference = "registry-error"

    def __init__(
        self,
        method: str,
        url: str,
        status_code: int,
        errors: tuple[ErrorDetail, ...] = (),
        *,
        hint: str | None = None,
    ) -> None:
        self.method = method
        self.url = url
        self.status_code = status_code
        self.errors = errors
        if errors:
            detail = "; ".join(f"{e.code}: {e.message}" if e.message else e.code for e in errors)
        else:
            detail = _STATUS_TEXT.get(status_code, "unexpected response")
        super().__init__(f"{method} {url}: response status code {status_code}: {detail}", hint=hint)

    @property
    def codes(self) -> frozenset[str]:
        """Return the distribution error codes in this answer."""
        return frozenset(e.code for e in self.errors)


class RegistryNotFoundError(RegistryError, NotFoundError):
    """Report a registry's 404 answer: a missing repository, tag, manifest or blob."""

    reference = "not-found"


class AuthenticationError(RegistryError):
    """Report a registry that refused the request's credentials (401 or 403)."""

    reference = "authentication-failed"


class NetworkError(OrascpError):
    """Report a registry that could not be reached or stopped answering."""

    reference = "network-error"


class TLSError(NetworkError):
    """Report a TLS certificate that could not be verified."""

    reference = "tls-verification"


class CopyError(OrascpError):
    """Wrap an error with the operation and side of the copy it came from."""

    reference = "copy-failed"

    def __init__(self, op: str, origin: Origin, cause: OrascpError) -> None:
        self.op = op
        self.origin = origin
        self.cause = cause
        super().__init__(f"failed to {op} on {origin.value}: {cause}", hint=cause.hint)


_STATUS_TEXT = {
    400: "bad request",
    401: "unauthorized",
    403: "denied",
    404: "not found",
    405: "method not allowed",
    413: "payload too large",
    416: "range not satisfiable",
    429: "too many requests",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}


def quote(value: object) -> str:
    """Return ``value`` in double quotes for a message, with control characters escaped."""
    text = str(value)
    escaped = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return f'"{escaped}"'
