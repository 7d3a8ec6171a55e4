"""Follows `name@alias` in the MLflow registry: load, smoke-test, then swap the served model atomically."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from service.config import ServiceConfig
from service.errors import ModelRefusedError, first_line, without_passwords
from service.loading import load_predictor
from service.predictor import PredictFn, ServedModel, smoke_test

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refusal:
    """A version the alias points at that is not served, and why; kept until the alias moves on."""

    version: str
    reason: str


class RegistryFollower:
    """Keeps the served model in step with the registry; never drops a working model for a broken one."""

    def __init__(
        self,
        config: ServiceConfig,
        on_change: Callable[[ServedModel], None] = lambda model: None,
        on_refusal: Callable[[Refusal | None], None] = lambda refusal: None,
        alias: str = "",
        repeat_warnings: bool = True,
    ) -> None:
        self._config = config
        self.alias = alias or config.alias  # the champion's, or the shadow's
        # A shadow alias that holds no version yet is the usual state, not a fault: its follower
        # warns once per distinct problem instead of at every retry.
        self._repeat_warnings = repeat_warnings
        self._client = MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.tracking_uri)
        self._on_change = on_change
        self._on_refusal = on_refusal
        self._current: ServedModel | None = None  # replaced whole: readers never see half a swap
        self._refused: dict[str, str] = {}  # version → why; only for causes a retry cannot change
        self._refusal: Refusal | None = None
        self._where = f"{config.model_name}@{self.alias} in {without_passwords(config.tracking_uri)}"
        self._problem = f"no model loaded yet: still looking up {self._where} for the first time"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def current(self) -> ServedModel | None:
        return self._current

    def problem(self) -> str:
        """Why nothing is served, for UNAVAILABLE messages."""
        return without_passwords(self._problem)  # the registry's own errors may quote its URI

    def refusal(self) -> Refusal | None:
        """The version the alias points at, if it was refused, and why."""
        return self._refusal

    def _refuse(self, version: str, reason: str) -> None:
        self._refused[version] = reason
        self._set_refusal(Refusal(version, reason))
        self._problem = f"no model loaded yet: version {version} of {self._config.model_name} was refused: {reason}"
        served = self._current.version if self._current else "nothing"
        logger.error(
            "refused version %s of %s@%s: %s; still serving %s",
            version,
            self._config.model_name,
            self.alias,
            reason,
            served,
        )

    def _set_refusal(self, refusal: Refusal | None) -> None:
        if refusal != self._refusal:
            self._refusal = refusal
            self._on_refusal(refusal)

    def sync_once(self) -> bool:
        """Resolve the alias and load its version if new; True if the served model changed.

        Raises when the registry or the version's files cannot be reached, so the caller backs off
        and tries again; a version refused for its content is not tried again."""
        name = self._config.model_name
        try:
            target: ModelVersion = self._client.get_model_version_by_alias(name, self.alias)
        except Exception as err:  # registry down, model or alias missing: keep serving what we have
            self._problem = f"no model loaded yet: cannot resolve {self._where}: {first_line(err)}"
            raise
        version = str(target.version)
        current = self._current
        if current is not None and current.version == version:
            self._set_refusal(None)
            return False
        if version in self._refused:
            return False
        if self._refusal is not None and self._refusal.version != version:
            self._set_refusal(None)  # the alias moved on from the refused version
        try:
            # The version, not the alias: the alias may move meanwhile.
            location = self._client.get_model_version_download_uri(name, version)
            predict, threshold = load_predictor(location, self._config.tracking_uri)
            smoke_test(predict, self._config.max_batch, abstains=threshold is not None)
        except ModelRefusedError as err:
            self._refuse(version, first_line(err))
            return False
        except Exception as err:
            self._problem = f"no model loaded yet: version {version} of {name} could not be loaded: {first_line(err)}"
            raise
        self._install(target, version, predict, threshold)
        return True

    def _install(self, target: ModelVersion, version: str, predict: PredictFn, threshold: float | None) -> None:
        tags = target.tags or {}
        model = ServedModel(
            name=self._config.model_name,
            alias=self.alias,
            version=version,
            run_id=target.run_id or "",
            test_accuracy=float(tags.get("test_accuracy", "nan")),
            recipe=tags.get("recipe", ""),
            loaded_at=datetime.now(UTC),
            predict=predict,
            ood_threshold=threshold,
            expected_neither_share=self._expected_neither_share(target) if threshold is not None else None,
        )
        previous, self._current = self._current, model
        self._set_refusal(None)
        logger.info(
            "serving version %s of %s@%s (was %s)",
            version,
            model.name,
            self.alias,
            previous.version if previous else "nothing",
        )
        self._on_change(model)

    def _expected_neither_share(self, target: ModelVersion) -> float | None:
        """Its run's test_rejected_share; None when the run or the metric cannot be read, which only
        leaves the live share without its yardstick."""
        try:
            share = (
                self._client.get_run(target.run_id).data.metrics.get("test_rejected_share") if target.run_id else None
            )
        except Exception as err:
            logger.warning("cannot read the run of version %s: %s", target.version, first_line(err))
            return None
        return None if share is None else float(share)

    def _run(self) -> None:
        failures = 0
        warned = ""
        while not self._stop.is_set():
            try:
                self.sync_once()
                failures, delay, warned = 0, self._config.poll_seconds, ""
            except Exception as err:
                # Back off quickly at first, up to the poll period: a transient fault is retried soon.
                failures += 1
                delay = min(0.5 * 2**failures, self._config.poll_seconds)
                if self._current is None:
                    problem = self._problem
                else:
                    problem = f"registry poll failed (still serving version {self._current.version}): {first_line(err)}"
                level = logging.WARNING if self._repeat_warnings or problem != warned else logging.DEBUG
                logger.log(level, "%s; retrying in %.1fs", without_passwords(problem), delay)
                warned = problem
            self._stop.wait(delay)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"registry-follower-{self.alias}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
