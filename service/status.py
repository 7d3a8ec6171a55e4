"""How every RPC reads the served model (once), and which status code each of the service's errors
becomes (one table, applied by the call guard to every call)."""

from __future__ import annotations

import logging
from typing import Protocol

import grpc

from service.errors import InvalidInputError, ModelError, NotFoundError, NotServingError
from service.follower import Refusal
from service.predictor import ServedModel

logger = logging.getLogger(__name__)


class ModelSource(Protocol):
    """What the servicers see of the registry follower."""

    def current(self) -> ServedModel | None: ...
    def problem(self) -> str: ...
    def refusal(self) -> Refusal | None: ...


def require_model(source: ModelSource) -> ServedModel:
    """The served model, read once for the whole call; NotServingError, saying why, when there is none."""
    model = source.current()
    if model is None:
        raise NotServingError(source.problem())
    return model


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
