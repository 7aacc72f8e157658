"""The typed records that cross module borders: the campaign record's sections read what every
earlier version stored and give it back unchanged; stores of earlier versions open, upgrade and
run; the same config and seed give the same sites and outcomes as the version that wrote them;
and every result carries its golden and faulty top-1 class from revision 0003 on."""

from __future__ import annotations

import csv
import json
import math
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fi_campaign.cli import main
from fi_campaign.models.arch import Arch
from fi_campaign.models.powerlaw import FaultModelRecord, PowerLaw
from fi_campaign.store import (
    CampaignRecord,
    LeftOut,
    ModelRecord,
    ProfileRecord,
    ResumePlan,
    Site,
    Store,
    StoreError,
    migrate,
)

DATA = Path(__file__).parent / "data"
# store-v1: fi-campaign 7cf2421 (schema_version 1, no migrations); store-v2: fi-campaign f0cf8f3
# (revision 0002, a fault model with its origin and lane sampler, a resume plan per model). Each
# is its .yaml planned, then run --mode single_bit, so half its sites have results.
OLDER = {"v1": DATA / "store-v1.db", "v2": DATA / "store-v2.db"}
JSON_COLUMNS = ("versions", "models", "workload", "fault_model")
OBSERVED = "outcome, images_changed, nan, max_abs_diff, backend, isolation, semantics"


def cli(*args: str) -> str:
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code == 0, r.output
    return r.output


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(sql).fetchall()


@pytest.mark.parametrize("version", sorted(OLDER))
def test_an_older_campaign_record_reads_typed_and_writes_back_the_same_json(version):
    (raw,) = rows(OLDER[version], f"SELECT name, seed, config, created, {', '.join(JSON_COLUMNS)} FROM campaign")
    row = dict(zip(("name", "seed", "config", "created") + JSON_COLUMNS, raw, strict=False))
    record = CampaignRecord.from_columns(row)
    assert record.json_columns() == {c: row[c] for c in JSON_COLUMNS}  # byte for byte
    m = record.models["baseline"]
    assert m.arch == Arch(depth=20) and m.profile is None and record.workload.count == 4
    assert (m.resume is None) == (version == "v1")  # delayed start came after v1
    fm = record.fault_model
    assert fm.law() == PowerLaw(2.0, 1.4543958) and fm.name == "dsn2021-fu"
    assert fm.lanes == ("numpy-pcg64/1" if version == "v1" else "fi-campaign/lanes/1")


def test_every_optional_section_round_trips():
    model = ModelRecord(
        checkpoint="zoo:x",
        sha256="ab" * 32,
        arch=Arch(depth=44, activation="relu6-nansafe"),
        dataset="cifar100",
        clean_accuracy=None,
        accuracy_on="",
        resume=ResumePlan(layers=(0, 3), budget_mb=64, cache_mb=12.5, all_mb=40.0, work=0.7, work_all=0.64),
        profile=ProfileRecord(
            path="/p/nvbitfi-igprofile.txt",
            sha256="cd" * 32,
            left_out=LeftOut(
                launches=2, instructions=9, total=90, group="fp32", why="kernel names of 1000 bytes or more"
            ),
        ),
    )
    assert ModelRecord.from_dict(json.loads(json.dumps(model.to_dict()))) == model
    without = {"path": "/p/old-profile.txt", "sha256": "ef" * 32}  # planned before launches were left out
    assert ProfileRecord.from_dict(without).to_dict() == without
    fitted = {
        "name": "mine",
        "kind": "fitted",
        "path": "/t/mine.yaml",
        "sha256": "01" * 32,
        "sources": ["/d/a.csv", None],
        "fit": {
            "small": {"n_tail": 40, "n": 300, "ks": 0.05, "group": {"micro": "FFMA"}},
            "common": {"n_tail": 50, "n": 400, "ks": 0.04, "group": {}},
            "big": {"n_tail": 9, "n": 30, "ks": 0.2, "group": {"micro": "FFMA", "input_size": "big"}},
        },
        "table": "/t/mine.yaml",
        "op": "FFMA",
        "size": "by-value",
        "semantics": "per-lane r",
        "sampler": "fi-campaign/lanes/1",
        "entries": {"small": [1e-3, 1.2], "common": [2.0, 1.5], "big": [3.0, 1.1]},
    }
    fm = FaultModelRecord.from_dict(fitted)
    assert fm.to_dict() == fitted and (fm.name, fm.kind, fm.law()) == ("mine", "fitted", PowerLaw(2.0, 1.5))
    first = {
        "table": "dsn2021-fu",
        "op": "FFMA",
        "size": "common",
        "semantics": "s",
        "entries": {"common": [2.0, 1.45]},
    }
    assert FaultModelRecord.from_dict(first).to_dict() == first  # the very first stores: no origin, no sampler
    with pytest.raises(TypeError):
        Site(1, "m", "single_bit", 0, "stem.0", 0, 0, 0, None, None)  # type: ignore[call-arg]  # the wrong call is the point: built with keywords only


def same_results(found: list[tuple], stored: list[tuple]) -> bool:
    """Rows equal but for max_abs_diff, which may differ by 1e-6. A last-bit flip moves logits by
    about that much, and how float32 rounds it depends on the machine: on an AVX-512 Xeon
    one of these stores' sites came out 2.86e-06 where the machine that wrote it found 2.62e-06,
    its outcome and all else equal."""
    return len(found) == len(stored) and all(
        a[:4] == b[:4] and a[5:] == b[5:] and math.isclose(a[4] or 0.0, b[4] or 0.0, rel_tol=1e-3, abs_tol=1e-6)
        for a, b in zip(found, stored, strict=True)
    )


@pytest.mark.parametrize("version", sorted(OLDER))
def test_an_older_store_upgrades_and_the_same_seed_gives_the_same_sites_and_outcomes(version, tmp_path):
    old = tmp_path / "old.db"
    shutil.copy(OLDER[version], old)
    before = rows(old, f"SELECT site_id, {OBSERVED} FROM result ORDER BY site_id")
    assert before  # the older version's single_bit results
    cli("--db", str(old), "run", "--workers", "1")
    with Store.open(old).engine.connect() as con:
        assert migrate.revision(con) == migrate.HEAD
    after = rows(old, f"SELECT site_id, {OBSERVED}, golden_top1, faulty_top1 FROM result ORDER BY site_id")
    assert [r[:-2] for r in after[: len(before)]] == before
    assert all(r[-2:] == (None, None) for r in after[: len(before)])  # their outputs are gone
    assert all(r[-2] is not None and r[-1] is not None for r in after[len(before) :])

    new = tmp_path / "new.db"
    cli("--db", str(new), "plan", str(OLDER[version].with_suffix(".yaml")))
    index_sql = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name"
    assert rows(old, index_sql) == rows(new, index_sql)  # upgraded, its indexes are a new store's
    site_columns = "id, model, mode, layer, layer_name, image, element, bit, width, value_seed"
    assert rows(new, f"SELECT {site_columns} FROM site ORDER BY id") == rows(
        old, f"SELECT {site_columns} FROM site ORDER BY id"
    )
    cli("--db", str(new), "run", "--workers", "1")
    fresh = rows(new, f"SELECT site_id, {OBSERVED}, golden_top1, faulty_top1 FROM result ORDER BY site_id")
    assert same_results([r[:-2] for r in fresh[: len(before)]], before)  # what the older version found, site for site
    if version != "v1":  # v1's warp sites replay numpy's lane draws, a new plan the lane specification's
        assert fresh[len(before) :] == after[len(before) :]
    for site_id, outcome, changed, *_, golden, faulty in fresh:  # one image per framework-level site
        assert (golden != faulty) == (outcome == "critical_sdc") == (changed == 1), site_id


def test_the_export_carries_the_top1_classes_and_an_older_result_leaves_them_empty(tmp_path):
    db = tmp_path / "v2.db"
    shutil.copy(OLDER["v2"], db)
    cli("--db", str(db), "run", "--workers", "1")
    cli("--db", str(db), "export", str(tmp_path / "out.csv"))
    with open(tmp_path / "out.csv", newline="") as f:
        exported = list(csv.DictReader(f))
    stored = {r[0]: r[1:] for r in rows(db, "SELECT site_id, golden_top1, faulty_top1 FROM result")}
    assert {int(r["site_id"]): (r["golden_top1"], r["faulty_top1"]) for r in exported} == {
        k: tuple("" if v is None else str(v) for v in vs) for k, vs in stored.items()
    }
    assert {r["golden_top1"] for r in exported if r["mode"] == "single_bit"} == {""}
    assert all(r["golden_top1"].isdigit() for r in exported if r["mode"] == "warp_random")
    import pyarrow.parquet as pq

    cli("--db", str(db), "export", str(tmp_path / "out.parquet"))
    table = pq.read_table(tmp_path / "out.parquet")
    assert str(table.schema.field("golden_top1").type) == "int64"
    assert table.column("faulty_top1").to_pylist() == [
        None if r["faulty_top1"] == "" else int(r["faulty_top1"]) for r in exported
    ]


def test_a_damaged_campaign_record_is_refused_in_one_sentence(tmp_path):
    db = tmp_path / "v2.db"
    shutil.copy(OLDER["v2"], db)
    with sqlite3.connect(db) as con:
        con.execute("""UPDATE campaign SET models = '{"baseline": {"checkpoint": "zoo:x"}}'""")
    with pytest.raises(StoreError, match="campaign record .* cannot be read"):
        Store.open(db).campaign()
    r = CliRunner().invoke(main, ["--db", str(db), "run"])
    assert r.exit_code == 2 and "damaged" in r.output and "Traceback" not in r.output, r.output
    assert len(rows(db, "SELECT * FROM result")) == 6  # nothing stored was lost


def test_records_made_once_per_injection_equal_the_ones_built_field_by_field():
    """Sites read by a claim and results made by an executor skip the frozen ``__init__``; they
    must be the records ``__init__`` makes, every field set (a missing one fails the comparison)."""
    from dataclasses import FrozenInstanceError, fields

    from fi_campaign.classify import Outcome
    from fi_campaign.engine.executors import result_of
    from fi_campaign.store import Result

    row: tuple[Any, ...] = (7, "m", "warp_random", 3, "layer3.0", 5, 640, None, 32, 99) + (None,) * 11
    names = [f.name for f in fields(Site)]
    assert len(row) == len(names)
    site = Site.from_row(row)
    assert site == Site(**dict(zip(names, row, strict=True)))
    judged = Outcome(
        outcome="sdc_critical", images_changed=1, nan=False, max_abs_diff=2.5, golden_top1=3, faulty_top1=4
    )
    made = result_of(site, judged, backend="pytorch", isolation="inprocess", semantics="s", runtime_s=0.01)
    assert made == Result(
        site_id=7,
        outcome="sdc_critical",
        images_changed=1,
        nan=False,
        max_abs_diff=2.5,
        golden_top1=3,
        faulty_top1=4,
        backend="pytorch",
        isolation="inprocess",
        semantics="s",
        runtime_s=0.01,
    )
    with pytest.raises(FrozenInstanceError):
        made.outcome = "masked"  # type: ignore[misc]
