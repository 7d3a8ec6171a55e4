"""Registration and the promotion gate, against a real SQLite registry."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from trainer.registry import MODEL_DESCRIPTION, promote, register, version_tags

NAME, ALIAS = "mnist-3v7", "champion"


def test_version_tags_hold_metrics_exactly() -> None:
    # 1 error in the 1240 validation images: tagged as "0.999194" it read back larger than itself,
    # so retraining the same model with the same seed "did not match" the alias holder.
    metrics = {"val_accuracy": 1 - 1 / 1240, "test_errors": 0.0, "robust_accuracy_thick": 0.5}
    tags = version_tags(metrics)
    assert float(tags["val_accuracy"]) == metrics["val_accuracy"]
    assert set(tags) == {"val_accuracy", "test_errors"}


def _new_version(client: MlflowClient, val_accuracy: float | None) -> str:
    """A registered version of a logged model (no files needed), tagged like the trainer's when given a score."""
    experiment = client.get_experiment_by_name("mnist37").experiment_id
    run = client.create_run(experiment)
    model = client.create_logged_model(experiment, source_run_id=run.info.run_id)
    tags = {} if val_accuracy is None else version_tags({"val_accuracy": val_accuracy})
    version = register(client, NAME, model.model_uri, model.model_id, run.info.run_id, tags, "a test version")
    return str(version.version)


def test_the_first_version_creates_the_model_and_takes_the_empty_alias(tracking_uri: str) -> None:
    client = MlflowClient()
    version = _new_version(client, 0.97)
    assert client.get_registered_model(NAME).description == MODEL_DESCRIPTION
    promotion = promote(client, NAME, ALIAS, version, 0.97, force=False)
    assert promotion.moved and promotion.reason == f"no version held @{ALIAS}"
    assert client.get_registered_model(NAME).aliases == {ALIAS: 1}


def test_the_alias_moves_only_to_a_version_no_worse_unless_forced(tracking_uri: str) -> None:
    client = MlflowClient()
    promote(client, NAME, ALIAS, _new_version(client, 0.98), 0.98, force=False)
    worse = promote(client, NAME, ALIAS, _new_version(client, 0.97), 0.97, force=False)
    assert not worse.moved and worse.reason == "val_accuracy 0.9700 < 0.9800 of version 1"
    assert client.get_registered_model(NAME).aliases == {ALIAS: 1}
    equal = promote(client, NAME, ALIAS, _new_version(client, 0.98), 0.98, force=False)
    assert equal.moved and client.get_registered_model(NAME).aliases == {ALIAS: 3}
    forced = promote(client, NAME, ALIAS, _new_version(client, 0.5), 0.5, force=True)
    assert forced.moved and forced.reason == "--force-promote"
    assert client.get_registered_model(NAME).aliases == {ALIAS: 4}


def test_a_holder_without_a_score_gives_way(tracking_uri: str) -> None:
    client = MlflowClient()
    promote(client, NAME, ALIAS, _new_version(client, None), 0.0, force=True)
    promotion = promote(client, NAME, ALIAS, _new_version(client, 0.9), 0.9, force=False)
    assert promotion.moved and promotion.reason == "version 1 has no val_accuracy"


def test_a_holder_without_the_tag_is_judged_by_its_runs_metric(tracking_uri: str) -> None:
    client = MlflowClient()
    experiment = client.get_experiment_by_name("mnist37").experiment_id
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "val_accuracy", 0.99)
    model = client.create_logged_model(experiment, source_run_id=run.info.run_id)
    held = register(client, NAME, model.model_uri, model.model_id, run.info.run_id, {}, "no tags")
    promote(client, NAME, ALIAS, str(held.version), 0.99, force=True)
    promotion = promote(client, NAME, ALIAS, _new_version(client, 0.95), 0.95, force=False)
    assert not promotion.moved and promotion.reason == "val_accuracy 0.9500 < 0.9900 of version 1"


@pytest.mark.parametrize("force", [False, True])
def test_promote_reports_the_holders_score_when_it_moves(tracking_uri: str, force: bool) -> None:
    client = MlflowClient()
    promote(client, NAME, ALIAS, _new_version(client, 0.9), 0.9, force=False)
    promotion = promote(client, NAME, ALIAS, _new_version(client, 0.95), 0.95, force=force)
    assert promotion.moved
    assert promotion.reason == ("--force-promote" if force else "val_accuracy 0.9500 ≥ 0.9000 of version 1")
