"""RunLog against a real SQLite store: the experiment's kind, batched curves, and how a run ends."""

from __future__ import annotations

import mlflow
import pytest
import torch
from mlflow import MlflowClient

from trainer.loop import EpochStats, Evaluation
from trainer.recipes import RECIPES
from trainer.tracking import RunLog, recipe_params


def _stats(epoch: int) -> EpochStats:
    val = Evaluation(loss=1 / (epoch + 1), accuracy=0.5 + epoch / 100, errors=0, p_three=torch.zeros(0))
    return EpochStats(epoch, None if epoch == 0 else 2 / (epoch + 1), val)


def _steps(run_id: str, key: str) -> list[int]:
    return [m.step for m in MlflowClient().get_metric_history(run_id, key)]


@pytest.mark.parametrize("existing", [True, False])
def test_the_experiment_opens_in_the_model_training_view(tracking_uri: str, existing: bool) -> None:
    name = "mnist37" if existing else "made-by-the-run"  # the store's fixture made "mnist37" untagged
    with RunLog(name, "tagged"):
        pass
    experiment = MlflowClient().get_experiment_by_name(name)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_epoch_metrics_wait_for_the_next_flush_and_arrive_complete(tracking_uri: str) -> None:
    with RunLog("mnist37", "batched", flush_seconds=3600) as log:
        for epoch in range(6):
            log.epoch(_stats(epoch))
        assert _steps(log.run_id, "val_loss") == []  # gathered, not yet sent
        log.final({"test_accuracy": 0.99})
        assert _steps(log.run_id, "val_loss") == list(range(6))
        assert _steps(log.run_id, "train_loss") == list(range(1, 6))  # none for the untrained network
        assert _steps(log.run_id, "test_accuracy") == [5]  # the last epoch's step
    run = MlflowClient().get_run(log.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["val_accuracy"] == pytest.approx(0.55)


def test_epoch_metrics_go_out_once_flush_seconds_have_passed(tracking_uri: str) -> None:
    with RunLog("mnist37", "eager", flush_seconds=0) as log:
        log.epoch(_stats(0))
        log.epoch(_stats(1))
        assert _steps(log.run_id, "val_loss") == [0, 1]


@pytest.mark.parametrize(("error", "status"), [(RuntimeError("disk full"), "FAILED"), (KeyboardInterrupt(), "KILLED")])
def test_a_failing_run_keeps_its_curves_and_says_how_it_ended(
    tracking_uri: str, error: BaseException, status: str
) -> None:
    with pytest.raises(type(error)), RunLog("mnist37", "crashing", flush_seconds=3600) as log:
        log.epoch(_stats(0))
        log.epoch(_stats(1))
        raise error
    assert MlflowClient().get_run(log.run_id).info.status == status
    assert _steps(log.run_id, "val_loss") == [0, 1]
    assert mlflow.active_run() is None


def test_params_flatten_the_recipe_and_its_augmentation(tracking_uri: str) -> None:
    params = recipe_params(RECIPES["cnn"])
    assert params["recipe"] == "cnn" and params["optimizer"] == "adamw" and params["augmentation"] is True
    assert params["augment_shift_px"] == 3.0 and "name" not in params
    assert params["made_weight_scribbles"] == 5.0 and "made_weights" not in params
    assert recipe_params(RECIPES["article"])["batch_size"] == "full"
    with RunLog("mnist37", "params") as log:
        log.params(params)
    logged = MlflowClient().get_run(log.run_id).data.params
    assert logged["augment_rotate_deg"] == "15.0" and logged["epochs"] == "30"
