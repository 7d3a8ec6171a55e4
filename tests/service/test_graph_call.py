"""A program is called through its graph only where that answers exactly as torch's wrapper does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.export import Dim, ExportedProgram

from service import graph_call
from service.graph_call import forward_of

PROBE = torch.from_numpy(np.random.default_rng(0).random((3, 784), dtype=np.float32))


class Plain(nn.Module):
    """Weights, a buffer and a lifted constant: everything the direct call binds."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(784, 2)
        self.norm = nn.BatchNorm1d(2)
        self.register_buffer("scale", torch.tensor([1.5, 0.5]), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.norm(self.linear(x)) * self.scale + torch.tensor([0.25, 0.0]))


class TwoOutputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(784, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.linear(x).squeeze(-1)
        return y, -y


class Counting(nn.Module):
    """Mutates a buffer on every call: in a functional graph, only torch's wrapper writes it back."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(784, 1)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.add_(1)
        return self.linear(x).squeeze(-1)


def exported(module: nn.Module) -> ExportedProgram:
    return torch.export.export(module.eval(), (PROBE,), dynamic_shapes=({0: Dim("batch", min=1, max=1024)},))


def test_a_plain_program_is_called_through_its_graph_and_answers_as_the_wrapper_does() -> None:
    program = exported(Plain())
    forward = forward_of(program, PROBE)
    assert forward.__qualname__.startswith("_graph_call")
    wrapper = program.module()
    for n in (1, 5, 1024):
        images = torch.rand(n, 784)
        with torch.inference_mode():
            assert torch.equal(forward(images), wrapper(images))


def test_the_direct_call_runs_the_guards_the_wrapper_runs() -> None:
    # Exported for 2 to 10 images: torch's guards refuse 11, and take 1 (it exports sizes 0 and 1 apart).
    program = torch.export.export(Plain().eval(), (PROBE,), dynamic_shapes=({0: Dim("batch", min=2, max=10)},))
    forward, wrapper = forward_of(program, PROBE), program.module()
    assert forward.__qualname__.startswith("_graph_call")
    with torch.inference_mode():
        assert torch.equal(forward(torch.ones(1, 784)), wrapper(torch.ones(1, 784)))
        for call in (forward, wrapper):
            with pytest.raises(AssertionError, match=r"Guard failed: x.size\(\)\[0\] <= 10"):
                call(torch.zeros(11, 784))


@pytest.mark.parametrize(
    "program",
    [exported(TwoOutputs()), exported(Counting()).run_decompositions()],
    ids=["two outputs", "a buffer it mutates"],
)
def test_any_other_program_keeps_the_wrapper(program: ExportedProgram) -> None:
    forward = forward_of(program, PROBE)
    assert isinstance(forward, nn.Module)  # torch's wrapper
    with torch.inference_mode():
        forward(PROBE)  # and it still runs


def test_a_graph_that_answers_otherwise_than_its_wrapper_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    program = exported(Plain())
    wrapper = program.module()
    monkeypatch.setattr(graph_call, "_graph_call", lambda *_: lambda images: wrapper(images) + 1e-6)
    assert isinstance(forward_of(program, PROBE), nn.Module)
    monkeypatch.setattr(graph_call, "_graph_call", lambda *_: lambda images: wrapper(images))
    assert not isinstance(forward_of(program, PROBE), nn.Module)  # the check itself lets an equal one through


def test_a_probe_the_wrapper_refuses_leaves_the_refusal_to_the_smoke_test() -> None:
    program = exported(Plain())
    forward = forward_of(program, torch.rand(3, 10))
    assert isinstance(forward, nn.Module)
