"""The store's tables: one campaign row, every planned site, every result, regret evaluations,
the NVBitFI injector's accounts, and the workers.

One schema for every database the store runs on (SQLite and PostgreSQL); the column comments say
what each holds. Tables are created and upgraded by the migrations in ``migrations/``, which must
agree with this module (tests/test_store.py checks they do).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

SCHEMA_VERSION = 2  # of plans written by this version; the schema itself is the migration revision
PENDING, RUNNING, DONE = "pending", "running", "done"
_RUNNING = text(f"status = '{RUNNING}'")
_STRATIFIED = text("stratum IS NOT NULL")

meta = MetaData()
campaign_t = Table(
    "campaign",
    meta,
    Column("id", Integer, primary_key=True),
    Column("schema_version", Integer, nullable=False),
    Column("name", String, nullable=False),
    Column("seed", BigInteger, nullable=False),
    Column("config", Text, nullable=False),  # Config JSON
    Column("versions", Text, nullable=False),  # JSON: fi-campaign, torch, python, platform
    Column("models", Text, nullable=False),  # JSON: name -> checkpoint, sha256, arch, accuracy
    Column("workload", Text, nullable=False),  # JSON: image source, dataset, indices
    Column("fault_model", Text, nullable=False),  # JSON: power-law table, entries, semantics
    Column("created", String, nullable=False),
)
site_t = Table(
    "site",
    meta,
    Column("id", Integer, primary_key=True),
    Column("model", String, nullable=False, index=True),
    Column("mode", String, nullable=False, index=True),
    # framework level (backend pytorch)
    Column("layer", Integer),
    Column("layer_name", String),
    Column("image", Integer),  # index into the workload's images
    Column("element", BigInteger),  # flat (C, H, W) index; first lane for a warp
    Column("bit", Integer),  # single_bit
    Column("width", Integer),  # warp_random lanes
    Column("value_seed", BigInteger),  # warp_random: seeds the lanes' uniforms and signs
    Column("parameter", String),  # weight modes: the qualified parameter name; element indexes it
    Column("stuck", Integer),  # weight_stuck_at: the value (0 or 1) the bit is stuck at
    # SASS level (backend nvbitfi): the injection-info fields
    Column("kernel", String),
    Column("kcount", BigInteger),  # global dynamic launch index
    Column("igid", Integer),
    Column("iid", BigInteger),  # 0-based dynamic instruction of the group within that launch
    Column("op_seed", Float),
    Column("bit_seed", Float),
    Column("value", Float),  # warp_random: the power-law relative error for builds that read it
    # sampling stratified: the site's stratum ("bit=30", "layer=stem.0 bit=30", "kernel=K") and its
    # share of the model x mode's fault population; NULL for simple random sampling
    Column("stratum", String),
    Column("stratum_weight", Float),
    Column("status", String, nullable=False, default=PENDING),
    Column("owner", String),  # worker holding a running site: "host:pid:n"
    Column("lease_until", Float),  # epoch seconds; a running site past it is free again
    Index("ix_site_stratum", "model", "mode", "status", "id"),
    # partial (migration 0007): a status change writes them only where the site is or was in them
    Index("ix_site_running", "owner", sqlite_where=_RUNNING, postgresql_where=_RUNNING),
    Index(
        "ix_site_sampling_stratum",
        "model",
        "mode",
        "stratum",
        "status",
        "id",
        sqlite_where=_STRATIFIED,
        postgresql_where=_STRATIFIED,
    ),
)
result_t = Table(
    "result",
    meta,
    Column("site_id", Integer, ForeignKey("site.id"), primary_key=True, autoincrement=False),
    Column("outcome", String, nullable=False, index=True),
    Column("images_changed", Integer, nullable=False),
    Column("nan", Boolean, nullable=False),
    Column("max_abs_diff", Float),
    Column("backend", String, nullable=False),
    Column("isolation", String, nullable=False),  # inprocess | process
    Column("semantics", String, nullable=False),  # which fault semantics applied
    Column("detail", String),  # why a DUE is a DUE; what a process run left behind
    Column("runtime_s", Float, nullable=False),
    Column("finished", String, nullable=False),
    # top-1 class of one image's golden and faulty outputs (-1: a NaN logit); NULL in results of
    # stores older than migration 0003, and where there is no such output (docs/REPORTS.md)
    Column("golden_top1", Integer),
    Column("faulty_top1", Integer),
)
# regret evaluations (`evaluate --regret --db`), beside the campaign they belong with
regret_t = Table(
    "regret",
    meta,
    Column("id", Integer, primary_key=True),
    Column("model", String, nullable=False),  # the checkpoint reference as given: path or zoo:NAME
    Column("sha256", String, nullable=False),  # of the weights (models.zoo.weights_digest)
    Column("label", String, nullable=False),  # the preset: activation, block order, fault-aware training
    Column("dataset", String, nullable=False),
    Column("source", String, nullable=False),  # where the test images came from
    Column("images", Integer, nullable=False),
    Column("repeats", Integer, nullable=False),
    Column("seed", BigInteger, nullable=False),
    Column("fault_model", Text, nullable=False),  # the noise, in words
    Column("clean", Float, nullable=False),
    Column("noisy", Float, nullable=False),
    Column("noisy_low", Float),  # NULL: one image gives no interval
    Column("noisy_high", Float),
    Column("regret", Float, nullable=False),
    Column("regret_low", Float),
    Column("regret_high", Float),
    Column("created", String, nullable=False),
    # which noise (models.noise_names); NULL in rows older than migration 0006, all of the paper's
    Column("noise", String),
)
# backend nvbitfi, beside the results (stores of older versions get them from migration 0002):
# what the injector's log said about each run, the injector's own count of each launch it
# reported on, and every proposal rejected because it lay past that
launch_count_t = Table(
    "launch_count",
    meta,
    Column("model", String, primary_key=True),
    Column("igid", Integer, primary_key=True),
    Column("kcount", BigInteger, primary_key=True, autoincrement=False),  # global launch index
    Column("kernel", String, nullable=False),
    Column("profile_count", BigInteger, nullable=False),  # the profile's count of the group in that launch
    Column("injector_count", BigInteger, nullable=False),  # the injector's, from a log of the whole launch
    Column("site_id", Integer),  # the run whose log showed it
    Column("observed", String, nullable=False),
)
redraw_t = Table(
    "redraw",
    meta,
    Column("id", Integer, primary_key=True),
    Column("site_id", Integer, ForeignKey("site.id"), nullable=False, index=True),
    Column("kernel", String, nullable=False),  # the rejected proposal
    Column("kcount", BigInteger, nullable=False),
    Column("iid", BigInteger, nullable=False),
    Column("injector_count", BigInteger, nullable=False),  # its launch's injector count: iid was past it
    Column("ran", Boolean, nullable=False),  # a GPU run showed it (else a count known before)
    Column("created", String, nullable=False),
)
injection_t = Table(
    "injection",
    meta,
    Column("site_id", Integer, ForeignKey("site.id"), primary_key=True, autoincrement=False),
    Column("state", String, nullable=False),  # injected | not_injected | no_report (the log's own account)
    Column("lanes_injected", Integer, nullable=False),  # threads the fault was written to, as logged
    Column("lanes_reported", Integer, nullable=False),  # injection records in the log (32 for pr2022 warps)
    Column("opcode", String),
    Column("reg", Integer),
    Column("mask", BigInteger),  # up to 32 bits, unsigned
    Column("lanes", Text, nullable=False),  # JSON: [lane, before, after] of every injected record
    Column("log_index", Integer),  # the launch the log reports on
    Column("log_kernel", String),
)
# one row per worker process that ever ran on this store: what `status` shows per worker
worker_t = Table(
    "worker",
    meta,
    Column("id", String, primary_key=True),  # the owner name of the sites it holds: "host:pid:n"
    Column("host", String, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("job", String),  # Slurm job id (array job id for an array task), NULL outside Slurm
    Column("array_index", Integer),
    Column("state", String, nullable=False),  # running | finished | stopped | released | failed
    Column("started", Float, nullable=False),  # epoch seconds on the database's clock
    Column("heartbeat", Float, nullable=False),  # last sign of life, same clock
    Column("lease_s", Float, nullable=False),  # its sites' lease: silent longer than this, it is lost
    Column("done", BigInteger, nullable=False),  # results it recorded
)
SITE_FIELDS = (
    "model",
    "mode",
    "layer",
    "layer_name",
    "image",
    "element",
    "bit",
    "width",
    "value_seed",
    "parameter",
    "stuck",
    "kernel",
    "kcount",
    "igid",
    "iid",
    "op_seed",
    "bit_seed",
    "value",
    "stratum",
    "stratum_weight",
)
RESULT_FIELDS = (
    "backend",
    "isolation",
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
)
# the injector's own account of an NVBitFI run (empty for in-process results)
INJECTION_FIELDS = ("state", "lanes_injected", "lanes_reported", "opcode", "reg", "mask")
EXPORT_FIELDS = ("site_id",) + SITE_FIELDS + RESULT_FIELDS  # one exported row: a site and its result
