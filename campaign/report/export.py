"""One row per injection, to CSV or Parquet, streamed from the store in batches so that a store
of millions of results never has to fit in memory. The file appears under its name only when
complete (written beside it, then renamed: ``fi_campaign.outputs``), so an interrupted export
leaves no truncated file that looks whole.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from fi_campaign.outputs import Output, replacing
from fi_campaign.store import Store

if TYPE_CHECKING:
    import pyarrow as pa
    from _typeshed import ReadableBuffer

EXPORT_COLUMNS = (
    "site_id",
    "model",
    "mode",
    "backend",
    "isolation",
    "layer",
    "layer_index",
    "image",
    "parameter",
    "element",
    "bit",
    "stuck",
    "width",
    "value_seed",
    "kernel",
    "kcount",
    "igid",
    "iid",
    "op_seed",
    "bit_seed",
    "value",
    "outcome",
    "images_changed",
    "nan",
    "max_abs_diff",
    "golden_top1",
    "faulty_top1",
    "semantics",
    "detail",
    "runtime_s",
    "finished",
    "injection",
    "lanes_injected",
    "lanes_reported",
    "opcode",
    "reg",
    "mask",
    "stratum",
    "stratum_weight",
)
PARQUET_SUFFIXES = (".parquet", ".pq")
# Parquet column types; "layer" is the layer's name, "layer_index" its position (the store's
# site.layer_name and site.layer); "injection" the injector's account of an NVBitFI run (the
# store's injection.state), empty with the lanes columns for in-process results; golden_top1 and
# faulty_top1 the top-1 class of one image (docs/REPORTS.md says which), empty in older stores;
# stratum and stratum_weight a stratified plan's stratum of the site and its share of the fault
# population (empty for simple random sampling), from which sum W_h k_h / n_h is the estimate;
# parameter (the qualified parameter name, element indexing it flat) and stuck (0 or 1) for
# weight faults, empty otherwise
_TYPES = {
    "site_id": "int64",
    "model": "string",
    "mode": "string",
    "backend": "string",
    "isolation": "string",
    "layer": "string",
    "layer_index": "int64",
    "image": "int64",
    "parameter": "string",
    "element": "int64",
    "bit": "int64",
    "stuck": "int64",
    "width": "int64",
    "value_seed": "int64",
    "kernel": "string",
    "kcount": "int64",
    "igid": "int64",
    "iid": "int64",
    "op_seed": "float64",
    "bit_seed": "float64",
    "value": "float64",
    "outcome": "string",
    "images_changed": "int64",
    "nan": "bool_",
    "max_abs_diff": "float64",
    "golden_top1": "int64",
    "faulty_top1": "int64",
    "semantics": "string",
    "detail": "string",
    "runtime_s": "float64",
    "finished": "string",
    "injection": "string",
    "lanes_injected": "int64",
    "lanes_reported": "int64",
    "opcode": "string",
    "reg": "int64",
    "mask": "int64",
    "stratum": "string",
    "stratum_weight": "float64",
}


def batches(store: Store, size: int = 20_000) -> Iterator[list[tuple]]:
    """Export rows in EXPORT_COLUMNS order, ``size`` at a time; the store's names differ for
    the layer ("layer" is its name here, "layer_index" its position). A site stores its image
    as a row of the campaign's drawn inputs; the export gives the input's index in its source
    (a CIFAR test-split index, an image folder's place in sorted order, a tensor file's row), so
    a site can be replayed from the source alone."""
    rename = {"layer": "layer_name", "layer_index": "layer", "injection": "state"}
    indices = store.campaign().workload.indices
    at = EXPORT_COLUMNS.index("image")
    for batch in store.export_batches(size, tuple(rename.get(c, c) for c in EXPORT_COLUMNS)):
        yield [_in_source(row, at, indices) for row in batch]


def _in_source(row: tuple, at: int, indices: tuple[int, ...]) -> tuple:
    image = row[at]
    if image is None or not 0 <= image < len(indices):  # an NVBitFI site names no image
        return row
    return (*row[:at], indices[image], *row[at + 1 :])


def export(store: Store, out: Output) -> int:
    """Write the rows as Parquet for a .parquet / .pq name, CSV otherwise; returns how many."""
    with replacing(out) as partial:
        return (_parquet if out.path.suffix.lower() in PARQUET_SUFFIXES else _csv)(store, partial)


def _csv(store: Store, path: Path) -> int:
    n = 0
    nan = EXPORT_COLUMNS.index("nan")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(EXPORT_COLUMNS)
        for batch in batches(store):
            w.writerows(["" if v is None else int(v) if i == nan else v for i, v in enumerate(row)] for row in batch)
            n += len(batch)
    return n


def parquet_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([(c, getattr(pa, _TYPES[c])()) for c in EXPORT_COLUMNS])


class _Sink(io.RawIOBase):
    """A file written front to back that counts its own position: Arrow asks where it is after
    every page, and a pipe or a device cannot say (lseek fails)."""

    def __init__(self, f: BinaryIO) -> None:
        super().__init__()
        self.f, self.at = f, 0

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        n = self.f.write(data)
        self.at += memoryview(data).nbytes
        return n

    def tell(self) -> int:
        return self.at


def _parquet(store: Store, path: Path, row_group: int = 100_000) -> int:
    """Python rows become Arrow columns 20k at a time (a Python row costs ~1 KB, an Arrow one
    ~100 bytes) and are written in row groups of ``row_group`` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema()
    n = 0
    pending: list = []
    stream = path.exists() and not path.is_file()  # a pipe or a device: Arrow cannot seek in it
    with (
        open(path, "wb") if stream else nullcontext() as f,
        pq.ParquetWriter(_Sink(f) if f else path, schema, compression="zstd") as writer,
    ):
        for batch in batches(store):
            columns = list(zip(*batch, strict=False))
            arrays = [
                pa.array(col, type=pa.int8()).cast(pa.bool_())
                if name == "nan"  # SQLite's 0/1
                else pa.array(col, type=field.type)
                for name, field, col in zip(EXPORT_COLUMNS, schema, columns, strict=False)
            ]
            pending.append(pa.RecordBatch.from_arrays(arrays, schema=schema))
            n += len(batch)
            if sum(b.num_rows for b in pending) >= row_group:
                writer.write_table(pa.Table.from_batches(pending, schema))
                pending = []
        if pending:
            writer.write_table(pa.Table.from_batches(pending, schema))
    return n
