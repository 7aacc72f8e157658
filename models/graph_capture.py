"""Capture a network's forward pass as a torch.fx graph in which every fault target is one
``call_module`` node, so that delayed start (models/graph_resume.py) can run the graph from any
target on.

The tracer is torch.fx's symbolic tracer with two changes:

- **Only the modules on the way to a target are traced through.** Every module that holds no
  target (a ReLU, a BatchNorm, a whole attention block without targets inside) stays a leaf and
  runs its own ``forward`` in the graph, Python control flow and all; a target is always a leaf.
- **Every node also gets its value on an example batch while it is traced.** Python code that
  asks a traced value for a decision (``if x.dim() != 3``, ``len(x.shape)``, ``for t in
  pair``) gets the answer of the example, as torch.fx's own meta tracer and Hugging Face's
  tracer do. A decision is only taken from shapes and other metadata (fixed in a campaign,
  whose passes all have the same batch shape); one that reads tensor values (``if
  x.sum() > 0``, ``.item()``) is refused, since it could go another way on other images.
  Plain ``torch.fx.symbolic_trace`` refuses every such decision, and nn.TransformerEncoder makes
  several on shapes, so it cannot be traced plainly.

What the graph does is then checked, not assumed: graph_resume runs it beside the model on
every golden batch and refuses a graph whose outputs differ from the model's in any bit.

A network that cannot be captured raises CaptureError, a UserError whose message is one sentence
saying why; the campaign then runs whole passes.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn
from torch.fx._symbolic_trace import _maybe_revert_all_patches
from torch.nn.modules import module as module_globals
from torch.utils import _pytree as pytree

from fi_campaign.errors import UserError


class CaptureError(UserError):
    """A network delayed start cannot capture; the message says why in one sentence."""


# Calls whose non-tensor result depends on a tensor's metadata only, never on its values.
METADATA_METHODS = frozenset(
    {
        "dim",
        "ndimension",
        "size",
        "numel",
        "nelement",
        "stride",
        "storage_offset",
        "is_contiguous",
        "element_size",
        "is_floating_point",
        "is_complex",
        "get_device",
    }
)
METADATA_ATTRIBUTES = frozenset(
    {"shape", "ndim", "dtype", "device", "layout", "is_nested", "is_cuda", "is_sparse", "is_quantized", "requires_grad"}
)


def _has_tensor(value: Any) -> bool:
    return any(isinstance(v, torch.Tensor) for v in pytree.tree_leaves(value))


def _reads_metadata_only(node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target in METADATA_METHODS
    return node.op == "call_function" and node.target is builtins.getattr and node.args[1] in METADATA_ATTRIBUTES


@dataclass
class Capture:
    """The graph of a network: ``module`` runs it (its leaves are the network's own modules);
    ``calls`` lists each target's call nodes in execution order."""

    module: fx.GraphModule
    calls: dict[str, list[fx.Node]]


class _Proxy(fx.Proxy):
    """A proxy that answers Python's questions (len, int, index) from its example value."""

    def __getattr__(self, k: str) -> fx.proxy.Attribute:
        return _Attribute(self, k)

    def __len__(self) -> int:
        return len(self.tracer.concrete(self, "len"))  # type: ignore[attr-defined]

    def __index__(self) -> int:
        return self.tracer.concrete(self, "index").__index__()  # type: ignore[attr-defined]

    def __int__(self) -> int:
        return int(self.tracer.concrete(self, "int"))  # type: ignore[attr-defined]

    def __float__(self) -> float:
        return float(self.tracer.concrete(self, "float"))  # type: ignore[attr-defined]


class _Attribute(fx.proxy.Attribute, _Proxy):
    pass


class _Tracer(fx.Tracer):
    def __init__(self, through: set[str], example: torch.Tensor) -> None:
        super().__init__(autowrap_modules=(math,))
        self.through = through
        self.example = example
        self.values: dict[fx.Node, Any] = {}
        self.from_data: set[fx.Node] = set()  # non-tensor values computed from tensor values
        self.placeholders = 0

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name not in self.through

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _Proxy(node, self)

    def call_module(
        self, m: nn.Module, forward: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if not any(isinstance(a, fx.Proxy) for a in pytree.tree_leaves((args, kwargs))):
            return forward(*args, **kwargs)  # nothing of the input flows in: a constant of the graph
        return super().call_module(m, forward, args, kwargs)

    def create_proxy(
        self,
        kind: str,
        target: fx.node.Target,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str | None = None,
        type_expr: Any | None = None,
        proxy_factory_fn: Callable[[fx.Node], fx.Proxy] | None = None,
    ) -> Any:
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        node = proxy.node
        with _maybe_revert_all_patches():
            value = self._evaluate(node)
        self.values[node] = value
        inputs = node.all_input_nodes
        if not _has_tensor(value) and (
            any(n in self.from_data for n in inputs)
            or (not _reads_metadata_only(node) and any(_has_tensor(self.values[n]) for n in inputs))
        ):
            self.from_data.add(node)
        if value is None and kind != "placeholder" and target is not builtins.getattr:
            return None  # so that `if w is not None` decides as the network does
        return proxy

    def _evaluate(self, node: fx.Node) -> Any:
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: self.values[n])
        if node.op == "placeholder":
            self.placeholders += 1
            if self.placeholders == 1:
                return self.example
            if args:
                return args[0]  # the parameter's default
            raise CaptureError(
                f"delayed start captures networks whose forward takes one input, and this one also "
                f"takes {str(node.target).lstrip('*')}."
            )
        if node.op == "get_attr":
            return _attr(self.root, node)
        if node.op == "call_module":
            return self.root.get_submodule(str(node.target))(*args, **kwargs)
        if node.op == "call_function":
            assert callable(node.target)
            return node.target(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], str(node.target))(*args[1:], **kwargs)
        return None

    def concrete(self, proxy: fx.Proxy, use: str) -> Any:
        """The example's value of ``proxy`` for a Python decision, refused when it was read
        from tensor values rather than shapes."""
        node = proxy.node
        value = self.values[node]
        if node in self.from_data or (isinstance(value, torch.Tensor) and use != "len"):
            raise CaptureError(
                f"delayed start cannot capture this network: its Python code decides on tensor values "
                f"(at {_where(node)}), which may go another way for other images."
            )
        return value

    def to_bool(self, obj: fx.Proxy) -> bool:
        return bool(self.concrete(obj, "bool"))

    def iter(self, obj: fx.Proxy) -> Iterator:
        return iter([obj[i] for i in range(len(self.concrete(obj, "len")))])  # type: ignore[index]


def _attr(root: nn.Module, node: fx.Node) -> Any:
    value: Any = root
    for part in str(node.target).split("."):
        value = getattr(value, part)
    return value


def _where(node: fx.Node) -> str:
    stack = node.meta.get("stack_trace") or ""
    lines = [line.strip() for line in stack.strip().splitlines() if line.strip().startswith("File")]
    return lines[-1].replace('"', "") if lines else f"node {node.name}"


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks)


def _compiled(model: nn.Module) -> str | None:
    """What a network torch.fx cannot trace for what it is says, before it is tried."""
    from torch.export.unflatten import UnflattenedModule

    from fi_campaign.models.script_taps import ScriptNetwork

    if isinstance(model, ScriptNetwork) or any(isinstance(m, torch.jit.ScriptModule) for m in model.modules()):
        return "a TorchScript program (torch.fx cannot trace its compiled code)"
    if isinstance(model, UnflattenedModule):
        return "a torch.export program (its forward takes a flattened tree of inputs, not one tensor)"
    return None


def capture(model: nn.Module, targets: list[str], example: torch.Tensor) -> Capture:
    """The graph of ``model`` with each of ``targets`` (qualified module names) a leaf, traced
    on ``example`` (a batch shaped like the campaign's passes decides shape-dependent Python
    branches as they will be decided)."""
    compiled = _compiled(model)
    if compiled:
        raise CaptureError(
            f"delayed start cannot capture {compiled}; build the network from its Python code to resume injections."
        )
    modules = dict(model.named_modules())
    missing = [t for t in targets if t not in modules or t == ""]
    if missing:
        raise CaptureError(f"delayed start has no module named {missing[0]!r} in this network to resume from.")
    names = set(targets)
    for t in targets:
        outer = next((o for o in names if t.startswith(o + ".")), None)
        if outer is not None:
            raise CaptureError(f"delayed start cannot resume from {t!r}, which lies inside the target {outer!r}.")
    through = {""} | {".".join(t.split(".")[:i]) for t in targets for i in range(1, t.count(".") + 1)}
    hooked = sorted(n for n in through if _hooked(modules[n]))
    if hooked:
        where = "the network itself" if hooked[0] == "" else repr(hooked[0])
        raise CaptureError(f"delayed start would skip the forward hooks of {where}, so it cannot capture this network.")
    if module_globals._global_forward_hooks or module_globals._global_forward_pre_hooks:
        raise CaptureError("delayed start would skip global module forward hooks, and some are registered.")
    tracer = _Tracer(through, example)
    try:
        with torch.inference_mode():
            graph = tracer.trace(model)
    except CaptureError:
        raise
    except Exception as e:  # torch.fx's refusals, and whatever the network's own code raises on proxies
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CaptureError(f"torch.fx cannot capture this network ({type(e).__name__}: {first.rstrip('.')}).") from e
    gm = fx.GraphModule(tracer.root, graph, type(model).__name__)
    calls: dict[str, list[fx.Node]] = {t: [] for t in targets}
    for node in gm.graph.nodes:
        if node.op == "call_module" and node.target in calls:
            calls[str(node.target)].append(node)
    never = [t for t, c in calls.items() if not c]
    if never:
        raise CaptureError(
            f"delayed start found no call of {never[0]!r} on the network's input in its forward pass, "
            f"so it cannot resume from there."
        )
    return Capture(gm, calls)
