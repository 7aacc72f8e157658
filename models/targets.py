"""Which modules of any network a fault can hit, what each one's output looks like per input,
and whether one fault per batch row is exact for the network.

A target is a module, named by its qualified name, whose output is one tensor in the network's
dtype (float32, float16 or bfloat16) with the batch as its first dimension, computed once per
forward pass. Modules that do not qualify are left out of the targets, and the plan says which
and why:

- a module that never runs in the forward pass (e.g. ``out_proj`` of ``nn.MultiheadAttention``,
  whose weights the attention uses without calling the module) cannot be hit;
- a module called more than once per pass (a shared layer) has no single output to hit;
- a module whose output is a tuple, a list or a dict (``nn.MultiheadAttention``, ``nn.LSTM``)
  has no single tensor to hit: target the modules inside it, or its consumer;
- an output not in the network's dtype, or whose first dimension is not the batch.

A ``names`` pattern that matches only such modules, or none at all, is refused.

Rows: a fault lands in one input's values, and each batch row carries its own fault, which is
exact only if nothing in the network mixes the rows of a batch (train-mode BatchNorm, attention
over the batch dimension of a ``batch_first=False`` transformer). ``check_rows`` perturbs row 0
at every target in one pass and requires every other row's outputs to stay bit-identical.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from fi_campaign.errors import UserError
from fi_campaign.models.faults import LayerInfo

DEFAULT_TYPES = ("Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "Linear")
SHOWN = 3  # modules a message names before "and N more"


class TargetError(UserError):
    """A target selection or a network a campaign cannot inject into; one sentence."""


@dataclass(frozen=True, kw_only=True)
class Selection:
    """The config's ``targets``: class names (None: DEFAULT_TYPES), globs over qualified names."""

    types: tuple[str, ...] | None = None
    names: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


def network_output(y: Any) -> torch.Tensor:
    """The tensor a network's output is judged by: the output itself, or the first element of a
    tuple or list (as many networks return (logits, extras)); anything else is refused."""
    if isinstance(y, (tuple, list)) and y:
        y = y[0]
    if not isinstance(y, torch.Tensor):
        raise TargetError(
            f"the network returns a {type(y).__name__}; it must return a tensor (or a tuple whose first "
            "element is one): wrap it in the build function."
        )
    return y


def class_names(module: nn.Module, recorded: str | None = None) -> set[str]:
    """The names a ``types`` entry matches a module by: its class and every base class below
    nn.Module (so ``Linear`` matches its subclasses), or the class recorded for it by an
    exported program, whose modules run as generic ones."""
    names = {recorded} if recorded else set()
    for cls in type(module).__mro__:
        if cls in (nn.Module, object):
            break
        names.add(cls.__name__)
    return names


def _few(names: list[str]) -> str:
    return ", ".join(names[:SHOWN]) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def select(
    model: nn.Module, sel: Selection, key: str, types: dict[str, str] | None = None
) -> list[tuple[str, nn.Module]]:
    """Candidate targets in ``named_modules`` order: modules of the types (default ones only when
    leaves), narrowed by ``names``, less ``exclude``. Every pattern must match some module."""
    types = types or {}
    modules = [(name, m) for name, m in model.named_modules() if name]
    wanted = set(sel.types or DEFAULT_TYPES)
    for kind, patterns in (("names", sel.names), ("exclude", sel.exclude)):
        for p in patterns:
            if not any(fnmatch.fnmatchcase(name, p) for name, _ in modules):
                some = _few([name for name, _ in modules])
                raise TargetError(f"targets.{kind}: {p!r} matches no module of {key} (its modules: {some}).")
    out = []
    for name, m in modules:
        if not wanted & class_names(m, types.get(name)):
            continue
        if sel.types is None and any(True for _ in m.children()):
            continue  # the default types are taken as leaves
        if sel.names and not any(fnmatch.fnmatchcase(name, p) for p in sel.names):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in sel.exclude):
            continue
        out.append((name, m))
    if not out:
        raise TargetError(
            f"targets select no module of {key} (types {', '.join(sorted(wanted))}"
            + (f", names {', '.join(sel.names)}" if sel.names else "")
            + (f", less {', '.join(sel.exclude)}" if sel.exclude else "")
            + ")."
        )
    return out


@dataclass
class _Seen:
    calls: int = 0
    output: str = ""  # "" while a tensor of the network's dtype with the batch first; else why not
    shape: tuple[int, ...] = ()
    in_numel: int = 0  # per input: the first tensor argument's elements


@dataclass(frozen=True, kw_only=True)
class Probe:
    """One pass of the network with every candidate target watched."""

    output: torch.Tensor
    seen: dict[str, _Seen] = field(default_factory=dict)


def probe(
    model: nn.Module, candidates: list[tuple[str, nn.Module]], x: torch.Tensor, dtype: torch.dtype = torch.float32
) -> Probe:
    """Run ``x`` through the network once, noting for each candidate how often it ran and what it
    returned; ``dtype``: the one the network runs in, the one its targets' outputs must have."""
    seen = {name: _Seen() for name, _ in candidates}
    batch = len(x)

    def hook(name: str) -> Any:
        def watch(module: nn.Module, args: tuple, out: Any) -> None:
            s = seen[name]
            s.calls += 1
            if not isinstance(out, torch.Tensor):
                s.output = f"returns a {type(out).__name__}"
            elif out.dtype != dtype:
                s.output = f"returns {_name(out.dtype)} values, not {_name(dtype)}"
            elif out.dim() == 0 or out.shape[0] != batch:
                s.output = f"returns a tensor of shape {tuple(out.shape)}, whose first dimension is not the batch"
            else:
                s.shape = tuple(out.shape[1:])
            first = next((a for a in args if isinstance(a, torch.Tensor)), None)
            if first is not None and first.dim() > 0 and first.shape[0] == batch:
                s.in_numel = first[0].numel()

        return watch

    handles = [m.register_forward_hook(hook(name)) for name, m in candidates]
    try:
        with torch.inference_mode():
            y = network_output(model(x))
    finally:
        for h in handles:
            h.remove()
    return Probe(output=y, seen=seen)


def _numpy(t: torch.Tensor) -> np.ndarray:
    """The tensor's values, bit for bit (numpy has no bfloat16: its bits as int16)."""
    t = t.detach().cpu()
    return (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy()


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def kind_of(module: nn.Module, recorded: str | None = None) -> str:
    names = class_names(module, recorded)
    if any(n.startswith("ConvTranspose") for n in names):
        return "convtranspose"
    if names & {"Conv1d", "Conv2d", "Conv3d"}:
        return "conv"
    return "linear" if "Linear" in names else "other"


def _macs(kind: str, module: nn.Module, numel: int, in_numel: int) -> int:
    """Multiply-accumulates per input: conv numel x fan-in, transposed conv input numel x
    (out/groups x kernel), linear numel x in_features, other modules their output elements."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() < 2:
        return numel
    if kind == "conv":
        return numel * weight[0].numel()
    if kind == "convtranspose":
        return in_numel * weight[0].numel()
    if kind == "linear":
        return numel * weight.shape[1]
    return numel


def describe(
    candidates: list[tuple[str, nn.Module]], seen: Probe, sel: Selection, key: str, types: dict[str, str] | None = None
) -> tuple[list[tuple[str, nn.Module]], list[LayerInfo], str | None]:
    """The targets that qualify (module docstring), their LayerInfo in that order, and a note
    on those left out. A ``names`` pattern matching only modules left out is refused."""
    types = types or {}
    kept: list[tuple[str, nn.Module]] = []
    infos: list[LayerInfo] = []
    left: dict[str, str] = {}
    for name, m in candidates:
        s = seen.seen[name]
        why = (
            "never runs in the forward pass"
            if s.calls == 0
            else f"runs {s.calls} times per pass"
            if s.calls > 1
            else s.output
        )
        if why:
            left[name] = why
            continue
        kind = kind_of(m, types.get(name))
        numel = int(np.prod(s.shape))
        infos.append(LayerInfo(len(kept), name, kind, s.shape, numel, _macs(kind, m, numel, s.in_numel)))
        kept.append((name, m))
    for p in sel.names:
        matched = [name for name, _ in candidates if fnmatch.fnmatchcase(name, p)]
        if matched and all(name in left for name in matched):
            raise TargetError(
                f"targets.names: {p!r} matches only modules that cannot be targets ({_reasons(left, matched)})."
            )
    if not kept:
        raise TargetError(f"no module of {key} can be a target ({_reasons(left, list(left))}).")
    note = None
    if left:
        note = f"{key}: {len(left)} of the selected modules are not targets ({_reasons(left, list(left))})."
    return kept, infos, note


def _reasons(left: dict[str, str], names: list[str]) -> str:
    return "; ".join(f"{n} {left[n]}" for n in names[:SHOWN]) + (
        f"; and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    )


@contextmanager
def _perturbed(targets: list[tuple[str, nn.Module]]) -> Iterator[None]:
    """Every target's output changed in batch row 0 (+1 everywhere), the other rows untouched."""

    def bump(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        out[0] += 1.0
        return out

    handles = [m.register_forward_hook(bump) for _, m in targets]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def check_rows(
    model: nn.Module, targets: list[tuple[str, nn.Module]], x: torch.Tensor, golden: torch.Tensor, key: str
) -> None:
    """Refuse a network in which a change of one input's values at some target reaches another
    input's outputs: one fault per batch row would then not be one independent injection per row."""
    if len(x) < 2:
        return
    with torch.inference_mode(), _perturbed(targets):
        y = network_output(model(x))
    a, b = _numpy(golden[1:]), _numpy(y[1:])
    if a.shape != b.shape or a.tobytes() != b.tobytes():
        raise TargetError(
            f"{key} mixes the inputs of a batch (a change in one input's values at its targets changed "
            "another input's outputs: BatchNorm in training mode, or attention over the batch as in a "
            "batch_first=False transformer), so one fault per batch row would not be exact; set batch_size: 1."
        )
