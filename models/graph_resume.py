"""Delayed start for any network: a fault in a target's output cannot change anything computed
before it, so an injection can start from the golden values live at that target and run only
the rest of the network's graph.

The graph comes from models/graph_capture.py (torch.fx, every target one ``call_module`` node).
At a *resume point* (a target) the values live are the nodes computed up to and including the
target that a later node still reads. They reach the rest of the graph three ways:

- tensors that carry the input's data (the target's output, a residual block's input, ...) are
  recorded per image during the golden run, with the memory layout (sizes, strides, offset) they
  had there, so a resumed pass hands later operations tensors laid out as a whole pass does and
  the kernels pick the same algorithms; one value live at several kept points is kept once,
  unless an in-place operation changed it in between;
- tensors that do not (parameters, a class token expanded to the batch size) are computed again,
  by the same operations;
- non-tensor values (a batch size, a shape) are the same for every pass of ``batch_size`` rows:
  they are kept once and must be equal on every golden batch.

The *tail* of a point is a graph of its own: the live values as inputs, then every node after the
target, the target's own call excluded. Modules called there (later targets among them) run
through ``Module.__call__``, so the caller's forward hooks fault later targets as in a whole pass.

Choices a caller must know:

- A target called more than once in a pass resumes from its first call; its later calls run in
  the tail, where the caller's hooks fault them as they do in a whole pass.
- A target whose output is not one tensor (a tuple, a dict) is no resume point (``why_not``
  says so): faults there start from an earlier point. Nor is a target where a live tensor has no
  batch dimension (the batch was reduced or flattened), overlaps itself (an expanded view), or
  shares memory with another live value (an in-place operation in the tail would write through
  both in a whole pass, and through one copy here).
- The tail returns what the network returns (a tensor, a tuple, a dict).

Why it is exact: the tail runs the network's own operations in the graph's order, on values equal
bit for bit to a whole pass's and laid out alike, in a pass of the same batch shape. And the
graph is checked rather than trusted: while recording, it runs beside the network on every golden
batch, and a graph whose outputs differ from the network's in one bit is refused (CaptureError
when the recording ends).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import fx, nn
from torch.fx.immutable_collections import immutable_dict, immutable_list
from torch.utils import _pytree as pytree
from torch.utils.flop_counter import FlopCounterMode

from fi_campaign.models.graph_capture import CaptureError, capture

__all__ = ["CaptureError", "GoldenValues", "GraphResumer", "ResumeInfo"]


@dataclass(frozen=True, kw_only=True)
class ResumeInfo:
    """One target as a resume point. ``index`` is its place in execution order (what
    ``recording``, ``tail`` and the cost methods take), ``target`` its place in the targets
    given."""

    index: int
    target: int
    name: str
    kept_bytes_per_image: int  # the golden values live after it, its own output included
    output_numel: int  # per image: the target's output
    macs: int  # per image: the target's own multiply-accumulates (of its first call)
    macs_after: int  # per image: those still to run after it
    macs_total: int  # per image: those of a whole pass
    why_not: str | None = None  # why it cannot be a resume point; None: it can


@dataclass(frozen=True)
class _Leaf:
    """A tensor kept per image: leaf ``index`` of node ``node``'s value, at in-place version
    ``version`` (two points that see the same version see the same value, kept once)."""

    node: str
    index: int
    version: int


@dataclass(frozen=True)
class _Layout:
    """A kept tensor as the golden pass held it: its batch dimension and memory layout."""

    dim: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    offset: int

    @property
    def plain(self) -> bool:
        """Row-major with the batch first: what indexing the store gives back as it is."""
        return self.dim == 0 and self.offset == 0 and self.stride == _row_major(self.size)

    @property
    def extent(self) -> int:
        return self.offset + 1 + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))


@dataclass
class _Live:
    """A node live at a point: its value's pytree ``spec`` and, per leaf, the kept tensor
    (_Leaf) or None for a non-tensor leaf kept once as a constant."""

    node: fx.Node
    spec: pytree.TreeSpec
    leaves: list[_Leaf | None]


@dataclass
class _Point:
    node: fx.Node  # the target's first call
    live: list[_Live]  # the tail's inputs, the target's output first
    recompute: list[fx.Node]  # nodes before the target that carry no input data and the tail needs
    tail: fx.GraphModule | None = None


def _row_major(size: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(size):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


def _overlaps_itself(t: torch.Tensor) -> bool:
    reach = 1
    for s, n in sorted((s, n) for s, n in zip(t.stride(), t.shape, strict=True) if n > 1):
        if s < reach:
            return True
        reach = s * n
    return False


def _span(t: torch.Tensor) -> tuple[int, int, int]:
    base = t.untyped_storage().data_ptr()
    start = int(t.storage_offset()) * t.element_size()
    reach = sum((int(n) - 1) * s for n, s in zip(t.shape, t.stride(), strict=True)) + 1
    return base, start, start + reach * t.element_size()


def _tensors(value: Any) -> list[torch.Tensor]:
    return [v for v in pytree.tree_leaves(value) if isinstance(v, torch.Tensor)]


def _equal(x: Any, y: Any) -> bool:
    try:
        return bool(x == y)
    except (RuntimeError, TypeError, ValueError):  # == gives no single truth value: count it as different
        return False


def same_bits(a: Any, b: Any) -> bool:
    """Two outputs (tensors, or tuples and dicts of them) equal bit for bit, NaNs included."""
    la, sa = pytree.tree_flatten(a)
    lb, sb = pytree.tree_flatten(b)
    if sa != sb:
        return False
    for x, y in zip(la, lb, strict=True):
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            if x.shape != y.shape or x.dtype != y.dtype:
                return False
            if x.numel() and not torch.equal(x.contiguous().view(torch.uint8), y.contiguous().view(torch.uint8)):
                return False
        elif isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor) or not _equal(x, y):
            return False
    return True


def _plain(value: Any) -> Any:
    """An output as the network returns it: the lists and dicts torch.fx's interpreter makes
    immutable, mutable again."""
    if isinstance(value, immutable_dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, immutable_list):
        return [_plain(v) for v in value]
    if type(value) is tuple:
        return tuple(_plain(v) for v in value)
    return value


class _Run(fx.Interpreter):
    """Runs a graph, showing each node's value to ``seen`` as soon as the node has run."""

    def __init__(self, gm: fx.GraphModule, seen: Callable[[fx.Node, Any, dict[fx.Node, Any]], None]) -> None:
        super().__init__(gm, garbage_collect_values=True)
        self.seen = seen

    def run_node(self, n: fx.Node) -> Any:
        value = super().run_node(n)
        self.seen(n, value, self.env)
        return value


@dataclass
class _Seen:
    """A node's value on one row: its pytree structure, each leaf's shape (None: not a
    tensor) and the node's multiply-accumulates."""

    spec: pytree.TreeSpec
    shapes: list[tuple[int, ...] | None]
    macs: int

    @property
    def tensors(self) -> bool:
        return any(s is not None for s in self.shapes)


def _run_measured(
    gm: fx.GraphModule, look: Callable[[fx.Node, Any, dict[fx.Node, Any]], None], x: torch.Tensor
) -> None:
    try:
        _Run(gm, look).run(x)
    except Exception as e:
        raise CaptureError(
            f"the captured graph fails on a batch of {len(x)} row(s) ({type(e).__name__}), so delayed start "
            f"cannot size its resume points."
        ) from e


def expected_share(after: Sequence[float], weights: Sequence[float] | np.ndarray, kept: Iterable[int]) -> float:
    """Expected share of a whole pass an injection still runs: a fault lands at point i with
    probability ``weights[i]`` and its pass starts from the last kept point at or before i
    (``after[k]``: the share of the pass after point k), or from the input when none is kept."""
    starts = sorted(kept)
    share = []
    for i in range(len(after)):
        k = bisect.bisect_right(starts, i) - 1
        share.append(after[starts[k]] if k >= 0 else 1.0)
    return float(np.dot(np.asarray(weights, dtype=np.float64), share))


def keep_greedily(
    candidates: Sequence[int],
    size_of: Callable[[list[int]], int],
    work_of: Callable[[list[int]], float],
    budget_bytes: int,
) -> list[int]:
    """Greedily the candidate point that removes the most expected work per byte kept, until
    nothing more fits in ``budget_bytes``: a knapsack heuristic, near enough since a point's
    worth falls as its neighbours are kept."""
    kept: list[int] = []
    work, used = 1.0, 0
    while True:
        best: tuple[float, int, int, float] | None = None
        for c in candidates:
            if c in kept:
                continue
            size = size_of(kept + [c]) - used
            if used + size > budget_bytes:
                continue
            after = work_of(kept + [c])
            score = (work - after) / max(size, 1)
            if work - after > 0 and (best is None or score > best[0]):
                best = (score, c, size, after)
        if best is None:
            return sorted(kept)
        kept.append(best[1])
        used += best[2]
        work = best[3]


class GraphResumer:
    """Delayed start on the captured graph of ``model`` from any of ``targets`` (qualified module
    names, in any order).

    ``example`` is a batch of the campaign's inputs, best a whole pass (``batch_size`` rows): the
    network is traced on it, so shape-dependent Python branches are decided as in the campaign's
    passes, then the graph runs on one and on two of its rows to find each live value's batch
    dimension and each node's multiply-accumulates. Raises CaptureError when the network cannot
    be captured or a target is not called on the input."""

    def __init__(self, model: nn.Module, targets: Sequence[str], example: torch.Tensor) -> None:
        self.model = model
        self.targets = list(targets)
        self.graph = capture(model, self.targets, example)
        self._nodes = list(self.graph.module.graph.nodes)
        position = {n: i for i, n in enumerate(self._nodes)}
        names = {calls[0]: t for t, calls in self.graph.calls.items()}
        firsts = sorted(names, key=position.__getitem__)
        one = example[:1]
        two = example[:2] if len(example) >= 2 else torch.cat([one, one])
        seen = self._first_run(one)
        data = self._carrying_data(seen)
        self._points = [self._plan(n, position, seen, data) for n in firsts]
        self._batch_dim: dict[tuple[str, int], int] = {}
        self._leaf_bytes: dict[_Leaf, int] = {}
        why = self._second_run(two, seen)
        total = sum(s.macs for s in seen.values())
        done = np.cumsum([seen[n].macs for n in self._nodes])
        self.points = [
            ResumeInfo(
                index=i,
                target=self.targets.index(names[p.node]),
                name=names[p.node],
                kept_bytes_per_image=sum(self._leaf_bytes[leaf] for lv in p.live for leaf in lv.leaves if leaf),
                output_numel=sum(int(np.prod(s)) for s in seen[p.node].shapes if s is not None),
                macs=seen[p.node].macs,
                macs_after=int(total - done[position[p.node]]),
                macs_total=int(total),
                why_not=why[i],
            )
            for i, p in enumerate(self._points)
        ]

    # -- measuring -----------------------------------------------------------------------------

    def _first_run(self, one: torch.Tensor) -> dict[fx.Node, _Seen]:
        seen: dict[fx.Node, _Seen] = {}
        with torch.inference_mode(), FlopCounterMode(display=False) as flops:
            counted = [0]

            def look(n: fx.Node, value: Any, env: dict[fx.Node, Any]) -> None:
                now = flops.get_total_flops()
                leaves, spec = pytree.tree_flatten(value)
                shapes = [tuple(v.shape) if isinstance(v, torch.Tensor) else None for v in leaves]
                seen[n] = _Seen(spec, shapes, (now - counted[0]) // 2)
                counted[0] = now

            _run_measured(self.graph.module, look, one)
        return seen

    def _carrying_data(self, seen: dict[fx.Node, _Seen]) -> set[fx.Node]:
        """The nodes whose tensors carry the input's data. A non-tensor value (a shape) does not
        carry it on, and what only such values and parameters make can be computed again."""
        data: set[fx.Node] = set()
        for n in self._nodes:
            if n.op == "placeholder":
                if seen[n].tensors:
                    data.add(n)
            elif any(m in data and seen[m].tensors for m in n.all_input_nodes):
                data.add(n)
        return data

    def _plan(
        self, target: fx.Node, position: dict[fx.Node, int], seen: dict[fx.Node, _Seen], data: set[fx.Node]
    ) -> _Point:
        """Which values the tail of ``target`` takes as inputs, and which it computes again."""
        at = position[target]
        todo = [m for n in self._nodes[at + 1 :] for m in n.all_input_nodes if position[m] <= at]
        recompute: set[fx.Node] = set()
        inputs: set[fx.Node] = {target}
        while todo:
            m = todo.pop()
            if m in data or not seen[m].tensors:
                inputs.add(m)  # kept per image, or a constant
            elif m not in recompute:
                recompute.add(m)
                todo.extend(m.all_input_nodes)
        ordered = sorted(inputs, key=lambda m: (m is not target, position[m]))
        return _Point(
            target, [_Live(m, seen[m].spec, []) for m in ordered], sorted(recompute, key=position.__getitem__)
        )

    def _second_run(self, two: torch.Tensor, seen: dict[fx.Node, _Seen]) -> list[str | None]:
        """Runs the graph on two rows: each kept tensor's batch dimension (the one that doubles),
        its in-place version at each point, and what makes a point no resume point."""
        why: list[str | None] = [None] * len(self._points)
        at_node = {p.node: i for i, p in enumerate(self._points)}

        def look(n: fx.Node, value: Any, env: dict[fx.Node, Any]) -> None:
            if n not in at_node:
                return
            i = at_node[n]
            if not isinstance(value, torch.Tensor):
                why[i] = f"its output is a {type(value).__name__}, not one tensor"
            spans: list[tuple[int, int, int]] = []
            for lv in self._points[i].live:
                leaves = pytree.tree_leaves(value if lv.node is n else env[lv.node])
                lv.leaves = []
                for k, leaf in enumerate(leaves):
                    if not isinstance(leaf, torch.Tensor):
                        lv.leaves.append(None)
                        continue
                    alone = seen[lv.node].shapes[k] or ()
                    grew = [d for d, (a, b) in enumerate(zip(alone, leaf.shape, strict=False)) if a != b]
                    if len(alone) != leaf.dim() or len(grew) != 1 or (alone[grew[0]], leaf.shape[grew[0]]) != (1, 2):
                        why[i] = why[i] or f"the value {lv.node.name} live after it has no batch dimension"
                    elif _overlaps_itself(leaf):
                        why[i] = why[i] or f"the value {lv.node.name} live after it is an expanded view"
                    span = _span(leaf)
                    if any(s[0] == span[0] and s[1] < span[2] and span[1] < s[2] for s in spans):
                        why[i] = why[i] or f"the value {lv.node.name} live after it shares memory with another"
                    spans.append(span)
                    self._batch_dim[(lv.node.name, k)] = grew[0] if len(grew) == 1 else 0
                    key = _Leaf(lv.node.name, k, 0 if leaf.is_inference() else leaf._version)
                    self._leaf_bytes[key] = int(np.prod(alone)) * leaf.element_size()
                    lv.leaves.append(key)

        with torch.no_grad():  # not inference mode: its tensors keep no in-place version
            _run_measured(self.graph.module, look, two)
        return why

    # -- costs: which points to keep within a memory bound -------------------------------------

    def cache_bytes(self, kept: Iterable[int], images: int) -> int:
        """Memory of the golden values of the points ``kept`` for ``images`` images (a value live
        at several of them counted once)."""
        leaves = {leaf for i in kept for lv in self._points[i].live for leaf in lv.leaves if leaf}
        return sum(self._leaf_bytes[leaf] for leaf in leaves) * images

    def expected_work(self, weights: Sequence[float] | np.ndarray, kept: Iterable[int]) -> float:
        """Expected share of a whole pass an injection still runs (see ``expected_share``)."""
        return expected_share([p.macs_after / max(p.macs_total, 1) for p in self.points], weights, kept)

    def choose(self, weights: Sequence[float] | np.ndarray, images: int, budget_bytes: int) -> list[int]:
        """The points to keep within ``budget_bytes`` (see ``keep_greedily``); points that cannot
        be resumed from are never kept."""
        return keep_greedily(
            [p.index for p in self.points if p.why_not is None],
            lambda kept: self.cache_bytes(kept, images),
            lambda kept: self.expected_work(weights, kept),
            budget_bytes,
        )

    # -- the golden run and the tails ----------------------------------------------------------

    @contextmanager
    def recording(self, keep: Iterable[int], images: int) -> Iterator[GoldenValues]:
        """While open, the first ``images`` rows that pass through the model, in order, have
        the values live at the points ``keep`` recorded: run the golden passes inside it with the
        campaign's batch shape. Each pass also runs the graph, whose outputs must equal the
        model's bit for bit; a difference raises CaptureError when the recording ends."""
        golden = GoldenValues(self, sorted(set(keep)), images)
        for i in golden.kept:
            if self.points[i].why_not is not None:
                raise ValueError(f"point {i} ({self.points[i].name}) cannot be kept: {self.points[i].why_not}")
        graph_out: list[Any] = []

        def before(module: nn.Module, args: tuple[Any, ...]) -> None:
            graph_out.append(golden._record(args[0].clone()))

        def after(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            if not same_bits(out, graph_out.pop()):
                golden.problems.append("its captured graph's outputs differ from the network's")

        handles = [self.model.register_forward_pre_hook(before), self.model.register_forward_hook(after)]
        try:
            yield golden
        finally:
            for h in handles:
                h.remove()
        if golden.problems:
            raise CaptureError(f"delayed start cannot resume this network: {golden.problems[0]}.")
        if golden.rows != images:
            raise RuntimeError(f"recording saw {golden.rows} of {images} images")

    def build_tails(self, points: Iterable[int]) -> None:
        """Make the tails of ``points`` now (code generation, milliseconds each), so the
        campaign's start-up pays for them rather than the first pass from each point."""
        for i in points:
            self._tail(self._points[i])

    def tail(self, point: int, out: torch.Tensor, golden: GoldenValues, rows: torch.Tensor) -> Any:
        """The network's output from kept point ``point``, its target's output replaced by
        ``out`` (its faults applied) and the other live values those of the images ``rows``
        (one per row of the pass, padded to the golden pass's batch size)."""
        return self._tail(self._points[point])(out, *golden._inputs(point, rows))

    def _tail(self, p: _Point) -> fx.GraphModule:
        if p.tail is None:
            p.tail = self._tail_module(p)
        return p.tail

    def _tail_module(self, p: _Point) -> fx.GraphModule:
        graph = fx.Graph()
        env: dict[fx.Node, fx.Node] = {}
        for lv in p.live:
            env[lv.node] = graph.placeholder(lv.node.name)
        at = self._nodes.index(p.node)
        for n in p.recompute + self._nodes[at + 1 :]:
            env[n] = graph.node_copy(n, env.__getitem__)
        return fx.GraphModule(self.graph.module, graph, f"{type(self.model).__name__}After_{p.node.name}")


class GoldenValues:
    """The golden values live at the kept points, for every image, on the model's device."""

    def __init__(self, resumer: GraphResumer, kept: list[int], images: int) -> None:
        self.resumer = resumer
        self.kept = kept
        self.images = images
        self.rows = 0  # images recorded so far
        self.stores: dict[_Leaf, torch.Tensor] = {}
        self.layouts: dict[_Leaf, _Layout] = {}
        self.constants: dict[tuple[str, int], Any] = {}
        self.problems: list[str] = []

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.stores.values())

    def start_for(self, point: int) -> int | None:
        """The kept point a pass whose earliest fault is at ``point`` starts from (None: the input)."""
        i = bisect.bisect_right(self.kept, point) - 1
        return self.kept[i] if i >= 0 else None

    def output(self, point: int, rows: torch.Tensor) -> torch.Tensor:
        """The golden output of kept point ``point``'s target for the images ``rows``, laid out
        as in the golden pass."""
        leaf = self.resumer._points[point].live[0].leaves[0]
        assert leaf is not None  # a resume point's output is one tensor
        return self._tensor(leaf, rows)

    def _inputs(self, point: int, rows: torch.Tensor) -> list[Any]:
        """The tail's inputs after the target's output: the other live values for ``rows``."""
        values = []
        for lv in self.resumer._points[point].live[1:]:
            leaves = [
                self.constants[(lv.node.name, k)] if leaf is None else self._tensor(leaf, rows)
                for k, leaf in enumerate(lv.leaves)
            ]
            values.append(pytree.tree_unflatten(leaves, lv.spec))
        return values

    def _tensor(self, leaf: _Leaf, rows: torch.Tensor) -> torch.Tensor:
        layout = self.layouts[leaf]
        if len(rows) != layout.size[layout.dim]:
            raise ValueError(f"a resumed pass has {len(rows)} rows and the golden passes had {layout.size[layout.dim]}")
        values = self.stores[leaf][rows]
        if layout.plain:
            return values
        values = values.movedim(0, layout.dim)
        base = torch.empty(layout.extent, dtype=values.dtype, device=values.device)
        return base.as_strided(layout.size, layout.stride, layout.offset).copy_(values)

    def _record(self, x: torch.Tensor) -> Any:
        """Runs one golden batch through the graph, keeping the live values of the kept points
        for its first rows (as many as images are still to record); returns the graph's output."""
        points = {self.resumer._points[i].node: self.resumer._points[i] for i in self.kept}
        rows = min(len(x), self.images - self.rows)
        first = self.rows == 0
        done: set[_Leaf] = set()

        def look(n: fx.Node, value: Any, env: dict[fx.Node, Any]) -> None:
            point = points.get(n)
            if point is None or rows <= 0:
                return
            for lv in point.live:
                leaves = pytree.tree_leaves(value if lv.node is n else env[lv.node])
                for k, leaf in enumerate(lv.leaves):
                    if leaf is None:
                        self._constant((lv.node.name, k), leaves[k], first)
                    elif leaf not in done:
                        self._keep(leaf, leaves[k], rows, first)
                        done.add(leaf)

        out = _Run(self.resumer.graph.module, look).run(x)
        self.rows += max(rows, 0)
        return _plain(out)

    def _keep(self, leaf: _Leaf, t: torch.Tensor, rows: int, first: bool) -> None:
        dim = self.resumer._batch_dim[(leaf.node, leaf.index)]
        layout = _Layout(dim, tuple(t.shape), tuple(t.stride()), int(t.storage_offset()))
        if first:
            self.layouts[leaf] = layout
            per_image = t.shape[:dim] + t.shape[dim + 1 :]
            self.stores[leaf] = torch.empty((self.images, *per_image), dtype=t.dtype, device=t.device)
        elif layout != self.layouts[leaf]:
            self.problems.append(f"the value {leaf.node} is laid out differently in two golden batches")
            return
        self.stores[leaf][self.rows : self.rows + rows] = t.movedim(dim, 0)[:rows]

    def _constant(self, key: tuple[str, int], value: Any, first: bool) -> None:
        if first:
            self.constants[key] = value
        elif not _equal(self.constants[key], value):
            self.problems.append(f"the value {key[0]} differs between golden batches")
