"""Follows `name@alias` in the MLflow registry: load, smoke-test, then swap the served model atomically."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import mlflow
import numpy as np
import torch
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from service.batching import CoalescingPredictor
from service.config import ServiceConfig
from service.predictor import PredictFn, ServedModel, smoke_test

logger = logging.getLogger(__name__)

Loader = Callable[[str], PredictFn]  # models:/ URI → predict function


def load_pt2(uri: str) -> PredictFn:
    """Load a torch.export program from the registry with pickle deserialization disallowed."""
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"
    module = mlflow.pytorch.load_model(uri)

    def predict(images: np.ndarray) -> np.ndarray:
        if not images.flags.writeable:  # decoded straight from the request buffer; torch wants writable memory
            images = images.copy()
        with torch.inference_mode():
            out: np.ndarray = module(torch.from_numpy(images)).numpy()
        return out

    return predict


class RegistryFollower:
    """Keeps the served model in step with the registry; never drops a working model for a broken one."""

    def __init__(
        self,
        config: ServiceConfig,
        loader: Loader = load_pt2,
        on_change: Callable[[ServedModel], None] | None = None,
    ) -> None:
        self._config = config
        self._client = MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.tracking_uri)
        self._loader = loader
        self._on_change = on_change
        self._current: ServedModel | None = None  # replaced whole: readers never see half a swap
        self._refused: dict[str, str] = {}  # version → why it was refused, so it is not retried every poll
        where = f"{config.model_name}@{config.alias} in {config.tracking_uri}"
        self._problem = f"no model loaded yet: still looking up {where} for the first time"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        mlflow.set_tracking_uri(config.tracking_uri)  # models:/ URIs resolve against it

    def current(self) -> ServedModel | None:
        return self._current

    def problem(self) -> str:
        """Why nothing is served, for UNAVAILABLE messages."""
        return self._problem

    def sync_once(self) -> bool:
        """Resolve the alias and load its version if new; True if the served model changed."""
        name, alias = self._config.model_name, self._config.alias
        where = f"{name}@{alias} in {self._config.tracking_uri}"
        try:
            target: ModelVersion = self._client.get_model_version_by_alias(name, alias)
        except Exception as err:  # registry down, model or alias missing: keep serving what we have
            self._problem = f"no model loaded yet: cannot resolve {where}: {str(err).splitlines()[0]}"
            raise
        version = str(target.version)
        current = self._current
        if current is not None and current.version == version:
            return False
        if version in self._refused:
            return False
        try:
            predict = self._loader(f"models:/{name}/{version}")  # the version, not the alias: it may move meanwhile
            smoke_test(predict)
        except Exception as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            self._refused[version] = reason
            self._problem = f"no model loaded yet: version {version} of {name} was refused: {reason}"
            logger.error(
                "refused version %s of %s: %s; still serving %s",
                version,
                name,
                reason,
                current.version if current else "nothing",
            )
            return False
        tags = target.tags or {}
        model = ServedModel(
            name=name,
            alias=alias,
            version=version,
            run_id=target.run_id or "",
            test_accuracy=float(tags.get("test_accuracy", "nan")),
            recipe=tags.get("recipe", ""),
            loaded_at=datetime.now(UTC),
            predict=CoalescingPredictor(predict),  # concurrent calls share forward passes
        )
        self._current = model
        logger.info("serving version %s of %s (was %s)", version, name, current.version if current else "nothing")
        if self._on_change is not None:
            self._on_change(model)
        return True

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                self.sync_once()
                delay = self._config.poll_seconds
            except Exception as err:
                if self._current is None:  # back off quickly at first, up to the poll period
                    delay = min(delay * 2, self._config.poll_seconds)
                    logger.warning("%s; retrying in %.1fs", self._problem, delay)
                else:
                    delay = self._config.poll_seconds
                    logger.warning(
                        "registry poll failed (still serving version %s): %s",
                        self._current.version,
                        str(err).splitlines()[0],
                    )
            self._stop.wait(delay)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="registry-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
