"""A loaded pt2 program as a plain call on one tensor: its guards, then its graph with its weights bound.

`ExportedProgram.module()` wraps the graph in an input tree check, guards, an output tree rebuild and
nn.Module's call machinery. For the small networks served here that wrapping costs several times the
graph's own arithmetic on one image, and every single-image call pays it (bench/README.md). A program
of the plain kind, weights in and one tensor in and out, is called through its graph directly, after
the same guards torch's wrapper runs (a program exported for at most 3 images refuses 64, so that the
smoke test refuses it); any other kind keeps torch's wrapper."""

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


def _graph_call(program: ExportedProgram, wrapped: torch.nn.Module) -> Forward | None:
    """The graph called directly after `wrapped`'s guards, or None for a program not of the plain kind."""
    inputs = program.graph_signature.input_specs
    outputs = program.graph_signature.output_specs
    user = [i for i, spec in enumerate(inputs) if spec.kind == InputKind.USER_INPUT]
    if len(user) != 1 or len(outputs) != 1 or outputs[0].kind != OutputKind.USER_OUTPUT:
        return None  # several inputs or outputs, or buffers it mutates: torch's wrapper handles those
    if any(spec.kind not in _CARRIED for i, spec in enumerate(inputs) if i != user[0]):
        return None  # tokens or script objects
    # The wrapper's guards, as torch generated them from the shapes the program was exported for; its
    # own code calls them as `self._guards_fn(x)`. A wrapper that has none has nothing to check.
    guards = getattr(wrapped, "_guards_fn", None)
    if guards is not None and not isinstance(guards, torch.nn.Module):
        return None
    check = guards.forward if guards is not None else None
    carried = [_carried_value(program, str(spec.target)) for spec in inputs if spec.kind != InputKind.USER_INPUT]
    before, after = carried[: user[0]], carried[user[0] :]
    graph = program.graph_module.forward

    def forward(images: torch.Tensor) -> torch.Tensor:
        if check is not None:
            check(images)
        out: tuple[torch.Tensor] = graph(*before, images, *after)
        return out[0]

    return forward


def forward_of(program: ExportedProgram, probe: torch.Tensor) -> Forward:
    """The cheapest call of `program` that answers `probe` exactly as torch's own wrapper does."""
    wrapped = program.module()
    # The input tree check repeats what decoding has already checked; the graph's guards still run.
    wrapped.validate_inputs = False  # type: ignore[assignment]  # a plain attribute, which torch reads
    try:
        direct = _graph_call(program, wrapped)
        with torch.inference_mode():
            same = direct is not None and torch.equal(direct(probe), wrapped(probe))
    except Exception:  # the wrapper's guards refuse the probe, or the graph needs what only the wrapper
        return wrapped  # does: keep the wrapper, and let the smoke test name what fails
    return direct if same and direct is not None else wrapped
