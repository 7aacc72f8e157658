"""The workload in this process: one model, the campaign's inputs and their golden outputs.

The model is a CIFAR ResNet of a fi-campaign checkpoint or any network the campaign recorded
(``workload.network``); its outputs are judged whatever their shape, one row per input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from fi_campaign.errors import UserError
from fi_campaign.models import zoo
from fi_campaign.models.faults import FaultBatch, Injector
from fi_campaign.models.graph_resume import CaptureError, GoldenValues, GraphResumer
from fi_campaign.models.targets import network_output
from fi_campaign.workload.images import check_checkpoint, workload_inputs

if TYPE_CHECKING:
    from torch import nn

    from fi_campaign.store import ModelRecord, WorkloadRecord
    from fi_campaign.workload.resume import GraphBudget


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device} was asked for but PyTorch sees no CUDA GPU here; use device: cpu.")
    return device


def _deterministic(math: str) -> None:
    from fi_campaign.workload.mathmode import set_math

    torch.backends.cudnn.benchmark = False  # the same kernels for the golden and every faulted pass
    torch.backends.cudnn.deterministic = True
    set_math(math)


def require_gpu() -> None:
    if not torch.cuda.is_available():
        raise UserError(
            "backend nvbitfi needs an NVIDIA GPU visible to PyTorch and none is; "
            "run 'fi-campaign doctor' on the GPU machine."
        )


@dataclass
class Workload:
    model: nn.Module
    meta: zoo.Meta | None  # a fi-campaign checkpoint's; None for any other network
    inputs: torch.Tensor  # as the network is given them (normalised images, or a tensor source's rows), on the device
    golden: np.ndarray  # (inputs, *output shape) float32
    injector: Injector
    batch_size: int
    graph: GraphResumer | None = None  # delayed start: the network's captured graph
    values: GoldenValues | None = None  # its golden values at the kept points
    point_of: np.ndarray | None = None  # per target index: its resume point (execution order)
    note: str | None = None  # why this network runs whole passes although delayed start was asked for

    @classmethod
    def open(
        cls,
        checkpoint: str,
        expect_sha256: str,
        workload: WorkloadRecord,
        device: str,
        batch_size: int,
        math: str = "fp32",
        resume_layers: list[int] | None = None,
        dtype: str = "float32",
    ) -> Workload:
        """``resume_layers``: the layers (models.resnet.injectable_layers) whose golden values
        are recorded during the golden run, for faulted passes that start there (the campaign
        record's resume plan); ``dtype``: what the network and its inputs are cast to."""
        from fi_campaign.models.sources import in_dtype
        from fi_campaign.workload.network import as_inputs

        _deterministic(math)
        model, meta = zoo.load(checkpoint, device=device)
        check_checkpoint(checkpoint, meta.sha256, expect_sha256)
        inputs = as_inputs(torch.from_numpy(workload_inputs(workload)).to(device), dtype)
        return cls.of_model(in_dtype(model, dtype), meta, inputs, batch_size, resume_layers)

    @classmethod
    def open_recorded(
        cls,
        info: ModelRecord,
        name: str,
        workload: WorkloadRecord,
        device: str,
        batch_size: int,
        math: str = "fp32",
        resume_layers: list[int] | None = None,
        graph: GraphBudget | None = None,
    ) -> Workload:
        """Model ``name`` as the campaign recorded it, whatever its source, with its targets;
        ``graph``: delayed start on its captured graph (a network with recorded targets only)."""
        from fi_campaign.workload.network import as_inputs, load_recorded

        if info.source is None and info.targets is None:
            return cls.open(info.checkpoint, info.sha256, workload, device, batch_size, math, resume_layers, info.dtype)
        _deterministic(math)
        inputs = as_inputs(torch.from_numpy(workload_inputs(workload)).to(device), info.dtype)
        names = None if info.targets is None else info.targets.names
        net = load_recorded(info.checkpoint, info.sha256, info.source, names, f"models.{name}", device, info.dtype)
        return cls.of_model(net.model, net.meta, inputs, batch_size, resume_layers, net.layers, graph)

    @classmethod
    def of_model(
        cls,
        model: nn.Module,
        meta: zoo.Meta | None,
        inputs: torch.Tensor,
        batch_size: int,
        resume_layers: list[int] | None = None,
        layers: list[tuple[str, nn.Module]] | None = None,
        graph: GraphBudget | None = None,
    ) -> Workload:
        """A loaded model with its golden run (and the kept golden values) on ``inputs``;
        ``layers``: its targets (default: a CIFAR ResNet's conv and linear layers). Delayed start
        resumes from the captured graph of the targets, at the layers ``resume_layers`` (a CIFAR
        ResNet's, planned) or at those chosen within ``graph``'s budget (any other network)."""
        w = cls(model.eval(), meta, inputs, np.empty(0), Injector(model, layers), batch_size)
        if graph is not None or resume_layers:
            w._record_graph([name for name, _ in w.injector.layers], graph, resume_layers or [])
        else:
            w.golden = w.forward(np.arange(len(inputs)))
        return w

    def _record_graph(self, targets: list[str], budget: GraphBudget | None, layers: list[int]) -> None:
        """The golden run, keeping the golden values of the resume points of ``layers`` (target
        indices), or of those chosen within ``budget``; a network whose graph cannot be captured
        (or differs from it) runs whole passes, and ``note`` says why."""
        from fi_campaign.workload.network import first_batch
        from fi_campaign.workload.resume import graph_keep

        every = np.arange(len(self.inputs))
        try:
            r = GraphResumer(self.model, targets, first_batch(self.inputs, self.batch_size))
            point_of = np.empty(len(targets), dtype=np.int64)
            for p in r.points:
                point_of[p.target] = p.index
            keep = graph_keep(r, budget, len(self.inputs)) if budget is not None else [int(point_of[k]) for k in layers]
        except CaptureError as e:
            self.note = str(e)
            self.golden = self.forward(every)
            return
        if not keep:
            self.golden = self.forward(every)
            return
        try:
            with r.recording(keep, len(self.inputs)) as values:
                self.golden = self.forward(every)
        except CaptureError as e:  # raised as the recording ends: the golden outputs are the model's own
            self.note = str(e)
            return
        r.build_tails(values.kept)
        self.graph, self.values, self.point_of = r, values, point_of

    @property
    def kept(self) -> list[int]:
        """The targets (layer indices) whose resume points delayed start keeps."""
        if self.graph is None or self.values is None:
            return []
        return sorted(self.graph.points[i].target for i in self.values.kept)

    def forward(self, rows: np.ndarray, faults: FaultBatch | None = None, resume: bool = True) -> np.ndarray:
        """Logits of the images ``rows`` (one batch row each), with ``faults`` armed if given.

        Every pass has exactly ``batch_size`` rows (a short chunk is padded with image 0):
        CPU and GPU kernels pick algorithms by shape, and a batch of 1 can differ from a
        batch of 256 in the last bits, which would read as an SDC. A faulted pass starts from
        the golden values of the last kept resume point at or before its earliest fault (in
        execution order) when golden values are kept (and ``resume``), else from the images.
        """
        out = []
        b = self.batch_size
        if faults is not None and len(rows) > b:
            raise ValueError(f"a faulted pass takes at most batch_size={b} rows, got {len(rows)}")
        if faults is not None and resume and self.values is not None and self.point_of is not None and len(rows):
            earliest = int(self.point_of[faults.layers].min())
            start = self.values.start_for(earliest - 1 if faults.needs_input else earliest)
            if start is not None:
                return self._resumed(rows, faults, start)
        with torch.inference_mode():
            for i in range(0, len(rows), b):
                chunk = rows[i : i + b]
                padded = np.concatenate([chunk, np.zeros(b - len(chunk), dtype=chunk.dtype)])
                x = self.inputs[torch.from_numpy(padded).to(self.inputs.device)]
                if faults is None:
                    y = network_output(self.model(x))
                else:
                    with self.injector.armed(faults):
                        y = network_output(self.model(x))
                out.append(y[: len(chunk)].float().cpu().numpy())
        return np.concatenate(out)

    def _resumed(self, rows: np.ndarray, faults: FaultBatch, start: int) -> np.ndarray:
        """One pass from resume point ``start`` of the captured graph: its target's golden output
        with that target's faults applied, the other golden values live there, then the rest of
        the graph with the hooks armed for faults further on. Padded like every pass."""
        values, graph, b = self.values, self.graph, self.batch_size
        assert values is not None and graph is not None, "forward resumes only where golden values are kept"
        padded = np.concatenate([rows, np.zeros(b - len(rows), dtype=rows.dtype)])
        idx = torch.from_numpy(padded).to(self.inputs.device)
        with torch.inference_mode(), self.injector.armed(faults):
            out = faults.apply(graph.points[start].target, values.output(start, idx))
            y = network_output(graph.tail(start, out, values, idx))
        return y[: len(rows)].float().cpu().numpy()

    def close(self) -> None:
        """Drop the hooks and the golden tensors (a model's cache can be hundreds of MB)."""
        self.injector.remove()
        self.graph = self.values = self.point_of = None

    def check_reproducible(self, tolerance: float) -> float:
        """Fault-free outputs of a reshuffled batch must equal the golden ones, or every
        comparison would mistake numerical noise for faults. Returns the largest difference."""
        n = len(self.golden)
        rows = np.random.default_rng(0).permutation(n)[: min(n, self.batch_size)]
        diff = float(np.abs(self.forward(rows) - self.golden[rows]).max())
        if diff > tolerance:
            raise UserError(
                f"fault-free outputs differ from the golden run by {diff:.3g} when images are batched "
                f"differently on this device; set tolerance to at least {diff:.3g} in the config."
            )
        return diff
