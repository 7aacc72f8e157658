"""TorchScript networks whose modules can be hooked like any others.

PyTorch refuses forward hooks on script modules, and a scripted parent calls its children's
compiled ``forward`` without going through Python. So the loaded program is edited instead: in
the graph of every module, each call of a child's ``forward`` is followed by a call of the
operator ``fi_campaign::tap(output, index)``, whose Python implementation passes the output
through a placeholder module (``Tap``) of the child's qualified name, on which the Injector's
hooks sit; with no hook, the tensor is returned untouched. Modules of one class share a graph in
TorchScript, so the index is read from an attribute of the calling instance, set per instance.
``ScriptNetwork`` runs the edited program and holds the placeholders under the qualified names of
the modules they stand for, so targets, hooks and reports name them as in the original network.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn

_TAPS: dict[int, nn.Module] = {}
_NEXT = itertools.count()
_LIBRARY: list[Any] = []  # the operator's library, kept alive for the process
ATTR = "_fi_campaign_tap_"


def _tap(x: torch.Tensor, index: int) -> torch.Tensor:
    tap = _TAPS.get(index)
    return x if tap is None else tap(x)


def _register() -> None:
    if _LIBRARY:
        return
    lib = torch.library.Library("fi_campaign", "DEF")
    lib.define("tap(Tensor x, int index) -> Tensor")
    lib.impl("tap", _tap, "CompositeExplicitAutograd")
    _LIBRARY.append(lib)


class Tap(nn.Module):
    """Stands for one module of a TorchScript program: its forward hooks see (and may replace)
    that module's output. ``weight``: the module's, for its multiply-accumulates (not a parameter)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class ScriptNetwork(nn.Module):
    """A loaded TorchScript program, edited so each module call passes through its Tap."""

    def __init__(self, script: torch.jit.ScriptModule) -> None:
        super().__init__()
        _register()
        self.__dict__["script"] = script  # not a child: its modules are the Taps
        self.script: torch.jit.ScriptModule
        self.types: dict[str, str] = {}
        self._tapped: set[str] = set()
        self._wrap(script, self, "")

    def _wrap(self, module: Any, holder: nn.Module, prefix: str) -> None:
        children = dict(module.named_children())
        for name, child in children.items():
            index = next(_NEXT)
            tap = Tap()
            weight = getattr(child, "weight", None)
            if isinstance(weight, torch.Tensor):
                tap.__dict__["weight"] = weight.detach()
            holder.add_module(name, tap)
            _TAPS[index] = tap
            self.types[prefix + name] = getattr(child, "original_name", type(child).__name__)
            attr = ATTR + name
            if module._c.hasattr(attr):
                module._c.setattr(attr, index)
            else:
                module._c._register_attribute(attr, torch._C.IntType.get(), index)
        self._edit(module)
        for name, child in children.items():
            self._wrap(child, getattr(holder, name), f"{prefix}{name}.")

    def _edit(self, module: Any) -> None:
        """Insert the taps into the graph of the module's class, once per class."""
        kind = module._c._type().qualified_name()
        if kind in self._tapped:
            return
        self._tapped.add(kind)
        try:
            graph = module.graph
        except (AttributeError, RuntimeError):  # a container without forward (ModuleList)
            return
        me = next(graph.inputs())
        for node in list(graph.nodes()):
            if node.kind() != "prim::CallMethod" or node.s("name") != "forward":
                continue
            owner = node.inputsAt(0).node()
            if owner.kind() != "prim::GetAttr" or owner.inputsAt(0).unique() != me.unique():
                continue
            if not node.output().type().isSubtypeOf(torch._C.TensorType.get()):
                continue  # a child returning a tuple or a dict is no target: nothing to tap
            index = graph.create("prim::GetAttr", [me])
            index.s_("name", ATTR + owner.s("name"))
            index.output().setType(torch._C.IntType.get())
            index.insertAfter(node)
            tap = graph.create("fi_campaign::tap", [node.output(), index.output()])
            tap.output().setType(node.output().type())
            tap.insertAfter(index)
            node.output().replaceAllUsesAfterNodeWith(tap, tap.output())

    def forward(self, *args: Any) -> Any:
        return self.script(*args)

    def _apply(self, fn: Any, recurse: bool = True) -> ScriptNetwork:
        self.script._apply(fn)
        super()._apply(fn, recurse)
        return self

    def train(self, mode: bool = True) -> ScriptNetwork:
        self.script.train(mode)
        super().train(mode)
        return self
