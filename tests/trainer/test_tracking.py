"""The background metric writer: batching, ordering and errors, isolated from any store."""

from __future__ import annotations

import threading

import pytest
from mlflow.entities import Metric

from trainer.background import MetricWriter


class RecordingClient:
    """Stands in for MlflowClient.log_batch only; the end-to-end runs use a real store."""

    def __init__(self, fail: bool = False, gate: threading.Event | None = None) -> None:
        self.batches: list[list[Metric]] = []
        self.fail = fail
        self.gate = gate

    def log_batch(self, run_id: str, metrics: list[Metric]) -> None:
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail:
            raise RuntimeError("store unavailable")
        self.batches.append(list(metrics))


def test_everything_put_is_written_in_order_by_close() -> None:
    client = RecordingClient()
    writer = MetricWriter("run", client)  # type: ignore[arg-type]
    for step in range(1, 301):
        writer.put({"train_loss": 1 / step, "val_loss": 2 / step}, step)
    writer.close()
    written = [m for batch in client.batches for m in batch]
    assert [(m.key, m.step) for m in written] == [(k, s) for s in range(1, 301) for k in ("train_loss", "val_loss")]
    assert all(len(batch) <= 1000 for batch in client.batches)


def test_a_slow_store_gets_batches_not_one_call_per_put() -> None:
    gate = threading.Event()
    client = RecordingClient(gate=gate)
    writer = MetricWriter("run", client)  # type: ignore[arg-type]
    for step in range(1, 1201):
        writer.put({"loss": 0.5}, step)
    gate.set()
    writer.close()
    assert sum(len(b) for b in client.batches) == 1200
    assert len(client.batches) <= 3  # the first put, then the backlog in ≤ 1000-metric calls


def test_a_store_error_surfaces_at_close() -> None:
    writer = MetricWriter("run", RecordingClient(fail=True))  # type: ignore[arg-type]
    writer.put({"loss": 0.5}, 1)
    with pytest.raises(RuntimeError, match="store unavailable"):
        writer.close()
