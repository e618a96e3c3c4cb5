"""Why the service refuses a request; each route maps these to HTTP statuses."""

from __future__ import annotations

Loc = tuple[str | int, ...]


class ServiceError(Exception):
    """A request that the service refuses; the message is meant for the client."""


class InvalidInput(ServiceError):
    """A request value that cannot be served (HTTP 422).

    ``loc`` is where the value sits in the request, as in a validation error, e.g.
    ``("body", "epochs")``; ``kind`` is a machine-readable reason, e.g. ``limit_exceeded``.
    """

    def __init__(self, loc: Loc, message: str, *, kind: str = "value_error") -> None:
        super().__init__(message)
        self.loc = loc
        self.kind = kind


class NotFound(ServiceError):
    """The thing asked for does not exist, or not for this tenant (HTTP 404)."""


class Conflict(ServiceError):
    """The request does not fit the current state of the job (HTTP 409)."""


class TooLarge(ServiceError):
    """Data past a size limit or the tenant's storage quota; the message names it (HTTP 413)."""


class QueueFull(ServiceError):
    """The tenant already has as many queued jobs as it may (HTTP 429)."""


class Unavailable(ServiceError):
    """A dependency (the broker) did not answer; nothing was stored (HTTP 503)."""
