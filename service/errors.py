"""The service's exceptions, and the status code each becomes when it reaches a client.

ValueError
├── ConfigError            a setting the service cannot start with; exit 2 naming it (config.py)
├── InvalidInputError      a client's request is malformed → INVALID_ARGUMENT
└── ModelRefusedError      a registry version is not served, for a reason a retry cannot change
    ├── UntrustedModelError    it holds something other than a pt2 program and its metadata
    └── SmokeTestError         it loads, but does not answer (N, 784) → (N,) probabilities
LookupError
└── NotFoundError          a model name or version this server does not serve → NOT_FOUND
RuntimeError
├── ModelError             the served model failed on a request → INTERNAL, naming the version
└── NotServingError        no version is served yet → UNAVAILABLE, saying why

status_of maps the last four to gRPC status codes, once, for every call (the call guard applies it);
http_status_of to HTTP statuses (400, 404, 500, 503) for every HTTP request.
"""

from __future__ import annotations

import logging
import re

import grpc

logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A setting with a value the service cannot run with; the message names the setting."""


class InvalidInputError(ValueError):
    """The client sent something the model cannot take; the message is meant for the client."""


class ModelRefusedError(ValueError):
    """A version that breaks the loading rules or does not work; retrying cannot change that."""


class UntrustedModelError(ModelRefusedError):
    """A version holding something other than a pt2 program and its metadata."""


class SmokeTestError(ModelRefusedError):
    """A loaded model gave answers of the wrong shape or outside [0, 1], or none at all."""


class NotFoundError(LookupError):
    """A model name or version this server does not serve."""


class ModelError(RuntimeError):
    """The served model failed on a request; the message names the version."""


class NotServingError(RuntimeError):
    """No version is served yet; the message says why (still looking, or which version was refused)."""


_PASSWORD_IN_URI = re.compile(r"(\w[\w+.-]*://[^/\s:@]*):[^/\s@]*@")


def without_passwords(text: str) -> str:
    """`text` with the password of every URI in it (scheme://user:password@host) shown as ***: a
    tracking URI may carry one, and the messages that quote it reach clients and logs."""
    return _PASSWORD_IN_URI.sub(r"\1:***@", text)


# Errors quote what a client sent, which may be megabytes. gRPC carries a message in a trailer, percent-
# encoded, under a size limit past which the client sees RESOURCE_EXHAUSTED in place of the status it was
# sent; an HTTP body has no such limit, but no use for a long echo. The bound leaves room for any text.
MESSAGE_CHARS = 500


def bounded(message: str) -> str:
    """`message`, cut to MESSAGE_CHARS characters and saying how many more there were."""
    if len(message) <= MESSAGE_CHARS:
        return message
    return f"{message[:MESSAGE_CHARS]}… ({len(message) - MESSAGE_CHARS} more characters)"


def first_line(err: BaseException) -> str:
    """An exception's first line, for messages and logs that must stay one line long."""
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def status_of(err: Exception) -> grpc.StatusCode | None:
    """The status code a servicer's error becomes; None for a bug, which gRPC reports as UNKNOWN.

    Client mistakes are INVALID_ARGUMENT or NOT_FOUND; a failing model INTERNAL, naming its version."""
    if isinstance(err, InvalidInputError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(err, NotFoundError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(err, NotServingError):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(err, ModelError):
        logger.error("%s", err)
        return grpc.StatusCode.INTERNAL
    return None


def http_status_of(err: Exception) -> int | None:
    """The HTTP status a handler's error becomes, as status_of does for gRPC; None for a bug (500)."""
    code = status_of(err)
    return None if code is None else HTTP_STATUS[code]


HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.INTERNAL: 500,
}
