"""The background run writer: batching, ordering and errors, isolated from any store."""

from __future__ import annotations

import threading
import time

import pytest
from mlflow.entities import Metric, Param

from trainer.background import RunWriter


class RecordingClient:
    """Stands in for MlflowClient's log_batch and log_artifacts; the end-to-end runs use a real store."""

    def __init__(self, fail: bool = False, gate: threading.Event | None = None) -> None:
        self.batches: list[list[Metric]] = []
        self.calls: list[str] = []
        self.fail = fail
        self.gate = gate
        self.entered = threading.Event()

    def log_batch(self, run_id: str, metrics: list[Metric] = (), params: list[Param] = ()) -> None:  # type: ignore[assignment]
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail:
            raise RuntimeError("store unavailable")
        if metrics:
            self.batches.append(list(metrics))
            self.calls.append(f"metrics {len(metrics)}")
        if params:
            self.calls.append("params " + ",".join(f"{p.key}={p.value}" for p in params))

    def log_artifacts(self, run_id: str, folder: str, artifact_path: str) -> None:
        self.calls.append(f"artifacts {folder} -> {artifact_path}")


def test_everything_put_is_written_in_order_by_close() -> None:
    client = RecordingClient()
    writer = RunWriter("run", client)  # type: ignore[arg-type]
    for step in range(1, 301):
        writer.put({"train_loss": 1 / step, "val_loss": 2 / step}, step)
    writer.close()
    written = [m for batch in client.batches for m in batch]
    assert [(m.key, m.step) for m in written] == [(k, s) for s in range(1, 301) for k in ("train_loss", "val_loss")]
    assert all(len(batch) <= 1000 for batch in client.batches)


def test_a_slow_store_gets_batches_not_one_call_per_put() -> None:
    gate = threading.Event()
    client = RecordingClient(gate=gate)
    writer = RunWriter("run", client)  # type: ignore[arg-type]
    for step in range(1, 1201):
        writer.put({"loss": 0.5}, step)
    gate.set()
    writer.close()
    assert sum(len(b) for b in client.batches) == 1200
    assert len(client.batches) <= 3  # the first put, then the backlog in ≤ 1000-metric calls


def test_a_store_error_surfaces_at_close() -> None:
    writer = RunWriter("run", RecordingClient(fail=True))  # type: ignore[arg-type]
    writer.put({"loss": 0.5}, 1)
    with pytest.raises(RuntimeError, match="store unavailable"):
        writer.close()


def test_other_writes_keep_their_place_among_the_metrics() -> None:
    gate = threading.Event()
    client = RecordingClient(gate=gate)
    writer = RunWriter("run", client)  # type: ignore[arg-type]
    writer.put({"loss": 0.5}, 0)
    assert client.entered.wait(5)  # the writer holds the first batch; the rest queue behind it
    writer.submit(lambda c: c.log_batch("run", params=[Param("lr", "0.1"), Param("batch_size", "full")]))
    writer.put({"loss": 0.4}, 1)
    writer.put({"loss": 0.3}, 2)
    writer.submit(lambda c: c.log_artifacts("run", "/tmp/figures", "figures"))
    writer.put({"test_accuracy": 1.0}, 0)
    gate.set()
    writer.close()
    assert client.calls == [
        "metrics 1",
        "params lr=0.1,batch_size=full",
        "metrics 2",  # the two queued behind the params go out together
        "artifacts /tmp/figures -> figures",
        "metrics 1",
    ]


def test_writes_within_the_linger_time_share_a_call_and_close_stops_the_wait() -> None:
    client = RecordingClient()
    writer = RunWriter("run", client, linger=5.0)  # type: ignore[arg-type]
    writer.put({"loss": 0.5}, 1)
    time.sleep(0.1)  # well after the writer took the first one
    writer.put({"loss": 0.4}, 2)
    started = time.monotonic()
    writer.close()
    assert time.monotonic() - started < 2.0  # closing ends the linger at once
    assert [[m.step for m in batch] for batch in client.batches] == [[1, 2]]
