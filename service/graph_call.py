"""A loaded pt2 program as a plain call on one tensor: its graph, with its weights bound, and nothing else.

`ExportedProgram.module()` wraps the graph in an input tree check, shape guards, an output tree
rebuild and nn.Module's call machinery. For the small networks served here that wrapping costs several
times the graph's own arithmetic on one image, and every single-image call pays it (bench/README.md).
The service has already checked what it passes (N×784 float32, N within its limit) and checks what
comes back, so a program of the plain kind, weights in and one tensor in and out, is called through
its graph directly; any other kind keeps torch's wrapper."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind, OutputKind

Forward = Callable[[torch.Tensor], torch.Tensor]

# Input kinds whose values the program carries itself, bound once at load.
_CARRIED = (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR)


def _carried_value(program: ExportedProgram, target: str) -> torch.Tensor:
    # Persistent buffers and parameters are in the state dict; lifted constants and non-persistent
    # buffers in the constants.
    value = program.state_dict.get(target)
    if value is None:
        value = program.constants[target]
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{target} is a {type(value).__name__}, not a tensor")
    return value


def _graph_call(program: ExportedProgram) -> Forward | None:
    """The graph called directly, or None for a program that is not of the plain kind."""
    inputs = program.graph_signature.input_specs
    outputs = program.graph_signature.output_specs
    user = [i for i, spec in enumerate(inputs) if spec.kind == InputKind.USER_INPUT]
    if len(user) != 1 or len(outputs) != 1 or outputs[0].kind != OutputKind.USER_OUTPUT:
        return None  # several inputs or outputs, or buffers it mutates: torch's wrapper handles those
    if any(spec.kind not in _CARRIED for i, spec in enumerate(inputs) if i != user[0]):
        return None  # tokens or script objects
    carried = [_carried_value(program, str(spec.target)) for spec in inputs if spec.kind != InputKind.USER_INPUT]
    before, after = carried[: user[0]], carried[user[0] :]
    graph = program.graph_module.forward

    def forward(images: torch.Tensor) -> torch.Tensor:
        out: tuple[torch.Tensor] = graph(*before, images, *after)
        return out[0]

    return forward


def forward_of(program: ExportedProgram, probe: torch.Tensor) -> Forward:
    """The cheapest call of `program` that answers `probe` exactly as torch's own wrapper does."""
    wrapped = program.module()
    # The input tree check repeats what decoding has already checked; the graph's guards still run.
    wrapped.validate_inputs = False  # type: ignore[assignment]  # a plain attribute, which torch reads
    direct = _graph_call(program)
    if direct is None:
        return wrapped
    try:
        with torch.inference_mode():
            same = torch.equal(direct(probe), wrapped(probe))
    except Exception:  # the wrapper's guards refuse the probe, or the graph needs what only the wrapper
        same = False  # does: keep the wrapper, and let the smoke test name what fails
    return direct if same else wrapped
