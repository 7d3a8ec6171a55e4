"""How every RPC reads the served model (once) and turns mistakes into gRPC status codes (one helper)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import grpc

from service.errors import InvalidInputError, ModelError, NotFoundError
from service.follower import Refusal
from service.predictor import ServedModel

logger = logging.getLogger(__name__)


class ModelSource(Protocol):
    """What the servicers see of the registry follower."""

    def current(self) -> ServedModel | None: ...
    def problem(self) -> str: ...
    def refusal(self) -> Refusal | None: ...


def require_model(source: ModelSource, context: grpc.ServicerContext) -> ServedModel:
    """The served model, read once for the whole call; UNAVAILABLE, saying why, when there is none."""
    model = source.current()
    if model is None:
        context.abort(grpc.StatusCode.UNAVAILABLE, source.problem())
    return model


@contextmanager
def status_codes(context: grpc.ServicerContext) -> Iterator[None]:
    """Client mistakes become INVALID_ARGUMENT or NOT_FOUND; a failing model INTERNAL, naming its version."""
    try:
        yield
    except InvalidInputError as err:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
    except NotFoundError as err:
        context.abort(grpc.StatusCode.NOT_FOUND, str(err))
    except ModelError as err:
        logger.error("%s", err)
        context.abort(grpc.StatusCode.INTERNAL, str(err))
