"""The model server's exception hierarchy: one place maps each failure to an HTTP status.

Everything a client can cause (bad JSON, wrong shapes, unknown models, a full queue) is a
``ServeError`` subclass with a 4xx status and a message that names the problem; the HTTP
layer turns it into ``{"error": message}`` and never shows a traceback.
"""

from __future__ import annotations


class ServeError(Exception):
    """A failure with an HTTP status and a message safe to show to the client."""

    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ServeError):
    """The request body is malformed or does not fit the model's signature."""

    status = 400


class NotFound(ServeError):
    """Unknown model, or a version that is not loaded."""

    status = 404


class PayloadTooLarge(ServeError):
    """The body exceeds ``max_body_bytes``."""

    status = 413


class Overloaded(ServeError):
    """The batch queue is full: the client should come back after ``retry_after_s``."""

    status = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(ServeError):
    """The model version is being unloaded or the server is shutting down."""

    status = 503


class DeadlineExceeded(ServeError):
    """The request's deadline passed before the model answered."""

    status = 504


class ModelFailed(ServeError):
    """The model raised on a batch; the message stays generic (details go to the log)."""

    status = 500


class RepositoryError(Exception):
    """A model version could not be found, read or loaded (not an HTTP error)."""


class ConfigError(ValueError):
    """Invalid server configuration; the message names the key, the value and what is allowed."""
