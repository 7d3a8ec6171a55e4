"""Registering a trained model and moving the serving alias only when it is no worse."""

from __future__ import annotations

from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

MODEL_DESCRIPTION = (
    "Tells a handwritten 3 from a 7. Input: float32 (N, 784), row-major 28×28 pixels in [0, 1]. "
    "Output: (N,) probability that each image is a 3; from versions that can abstain (N, 2): that "
    "probability and p(neither 3 nor 7), which above the version's metadata ood_threshold means neither."
)


@dataclass(frozen=True)
class Promotion:
    moved: bool
    reason: str


def version_tags(metrics: dict[str, float]) -> dict[str, str]:
    """The headline metrics as version tags, exactly: the promotion gate compares the next run's
    validation accuracy with this tag, and a rounded tag made an identical model look worse. The
    per-distortion, per-digit and per-kind details stay in the run."""
    detail = ("robust_", "test_accepted_share_digit_", "made_rejected_share_")
    return {k: repr(float(v)) for k, v in metrics.items() if not k.startswith(detail)}


def _missing(err: MlflowException) -> bool:
    return err.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)


def register(
    client: MlflowClient, name: str, model_uri: str, model_id: str, run_id: str, tags: dict[str, str], description: str
) -> ModelVersion:
    """Create the registered model if needed and add a version for the logged model `model_id`."""
    try:
        client.get_registered_model(name)
    except MlflowException as err:
        if not _missing(err):
            raise
        client.create_registered_model(name, description=MODEL_DESCRIPTION)
    # A tracking server accepts a models:/ source only together with the logged model's id.
    return client.create_model_version(
        name, model_uri, run_id=run_id, tags=tags, description=description, model_id=model_id
    )


def holder_val_accuracy(client: MlflowClient, version: ModelVersion) -> float | None:
    """The alias holder's validation accuracy: its version tag, else its run's metric."""
    if "val_accuracy" in version.tags:
        return float(version.tags["val_accuracy"])
    if version.run_id:
        metric = client.get_run(version.run_id).data.metrics.get("val_accuracy")
        return None if metric is None else float(metric)
    return None


def promote(client: MlflowClient, name: str, alias: str, version: str, val_accuracy: float, force: bool) -> Promotion:
    """Point `alias` at `version` if its validation accuracy is not worse than the holder's."""
    # The registered model's alias map, not get_model_version_by_alias: stores differ in the
    # error code they give for a missing alias.
    held_version = client.get_registered_model(name).aliases.get(alias)
    holder = None if held_version is None else client.get_model_version(name, held_version)
    if force:
        reason = "--force-promote"
    elif holder is None:
        reason = f"no version held @{alias}"
    else:
        held = holder_val_accuracy(client, holder)
        if held is not None and val_accuracy < held:
            return Promotion(False, f"val_accuracy {val_accuracy:.4f} < {held:.4f} of version {holder.version}")
        reason = (
            f"val_accuracy {val_accuracy:.4f} ≥ {held:.4f} of version {holder.version}"
            if held is not None
            else f"version {holder.version} has no val_accuracy"
        )
    client.set_registered_model_alias(name, alias, version)
    return Promotion(True, reason)
