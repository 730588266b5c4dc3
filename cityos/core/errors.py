"""NGSI-LD error types (ETSI GS CIM 009, clause 5.5.2) raised by every core module.

The API turns each into a ProblemDetails body (RFC 7807) with the matching status.
"""

from __future__ import annotations

ERROR_BASE = "https://uri.etsi.org/ngsi-ld/errors/"
#: C0 and C1 control characters, written ``\\uXXXX`` in every error detail: a detail
#: often quotes what the client sent (an id from a URL), and a raw control character
#: would reach a terminal or a log line as it is.
_CONTROL_ESCAPES = {c: f"\\u{c:04x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}


class NgsiLdError(Exception):
    """Base of every error CityOS reports to an NGSI-LD client.

    Parameters
    ----------
    detail : str
        Precise, human-readable text naming the field or value at fault.
    """

    error_type = "InternalError"
    title = "Internal error"
    status = 500

    def __init__(self, detail: str):
        if isinstance(detail, str):
            detail = detail.translate(_CONTROL_ESCAPES)
        super().__init__(detail)
        self.detail = detail

    @property
    def type_uri(self) -> str:
        return ERROR_BASE + self.error_type

    def problem(self) -> dict:
        """Return the ProblemDetails body for this error."""
        return {"type": self.type_uri, "title": self.title, "status": self.status,
                "detail": self.detail}


class InvalidRequest(NgsiLdError):
    error_type, title, status = "InvalidRequest", "Invalid request", 400


class BadRequestData(NgsiLdError):
    error_type, title, status = "BadRequestData", "Bad request data", 400


class AlreadyExists(NgsiLdError):
    error_type, title, status = "AlreadyExists", "Already exists", 409


class OperationNotSupported(NgsiLdError):
    error_type, title, status = "OperationNotSupported", "Operation not supported", 422


class ResourceNotFound(NgsiLdError):
    error_type, title, status = "ResourceNotFound", "Resource not found", 404


class TooManyResults(NgsiLdError):
    error_type, title, status = "TooManyResults", "Too many results", 403


class LdContextNotAvailable(NgsiLdError):
    error_type, title, status = "LdContextNotAvailable", "@context not available", 503


class ContextUnreachable(LdContextNotAvailable):
    """A context the request names cannot be retrieved (the conformance suite and
    clause 5.8.1 expect 504 Gateway Timeout for an unreachable ``jsonldContext``)."""

    status = 504


class Unauthorized(NgsiLdError):
    error_type, title, status = "Unauthorized", "Unauthorized", 401
    #: RFC 9110: a 401 names the scheme the client should use
    headers = {"WWW-Authenticate": 'Bearer realm="cityos"'}

    @property
    def type_uri(self) -> str:  # not an NGSI-LD type; CityOS's own
        return "https://cityos.org/errors/Unauthorized"


class Forbidden(NgsiLdError):
    error_type, title, status = "Forbidden", "Forbidden", 403

    @property
    def type_uri(self) -> str:
        return "https://cityos.org/errors/Forbidden"


class PayloadTooLarge(NgsiLdError):
    error_type, title, status = "BadRequestData", "Payload too large", 413
