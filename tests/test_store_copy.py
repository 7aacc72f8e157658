"""``store copy``: a campaign moves SQLite -> PostgreSQL -> SQLite and exports identically, row
for row; a destination holding a campaign is refused and left as it was."""

from __future__ import annotations

import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import TypedDict

import pytest
from click.testing import CliRunner

from bench import zero_cost
from fi_campaign.cli import main
from fi_campaign.models.arch import Arch
from fi_campaign.store import InjectionRecord, LaunchCount, ModelRecord, Redraw, RegretRecord, Relocation, Result, Store
from fi_campaign.store.schema import EXPORT_FIELDS

EXE = str(Path(sys.executable).with_name("fi-campaign"))
OUTCOMES = ("masked", "tolerable_sdc", "critical_sdc", "due", "not_injected")


class NvbitfiFields(TypedDict, total=False):
    """The keywords of Result that only an NVBitFI run fills."""

    injection: InjectionRecord
    relocated: Relocation
    redraws: tuple[Redraw, ...]
    launch_counts: tuple[LaunchCount, ...]


# what an NVBitFI run stores beside its result: every table of the store gets rows
NVBITFI: NvbitfiFields = {
    "injection": InjectionRecord(
        state="injected",
        lanes_injected=2,
        lanes_reported=32,
        opcode="FFMA",
        reg=12,
        mask=0xFFFFFFFF,
        lanes=((3, 1, 2), (4, None, 5)),
        log_index=5,
        log_kernel="k",
    ),
    "relocated": Relocation(kernel="k", kcount=2**33, iid=2**40),
    "redraws": (Redraw(site_id=1, kernel="k", kcount=3, iid=2**41, injector_count=250, ran=True),),
    "launch_counts": (
        LaunchCount(model="m", igid=1, kcount=2**33, kernel="k", profile_count=2**35, injector_count=2**34, site_id=1),
    ),
}


def campaign_with_results(db: Path, n: int) -> None:
    """A store of ``n`` sites with a result each, values chosen to catch a lossy copy: 62-bit
    seeds, extreme and missing floats, text with quotes and non-ASCII, both booleans."""
    rng = random.Random(n)
    model = ModelRecord(
        checkpoint="zoo:m",
        sha256="ab" * 32,
        arch=Arch(),
        dataset="cifar10",
        clean_accuracy=0.1 + 0.2,
        accuracy_on="test ‘split’ ünïcode",
    )
    record = replace(zero_cost.record("copy"), seed=2**40 + 3, config='{"name": "copy"}', models={"m": model})
    sites = [
        {
            "model": "m",
            "mode": "warp_random" if i % 2 else "single_bit",
            "layer": i % 19,
            "layer_name": f"blocks.{i % 3}.conv",
            "image": i % 200,
            "element": rng.randrange(2**40),
            "bit": i % 32,
            "width": 32 if i % 2 else None,
            "value_seed": rng.randrange(2**62) if i % 2 else None,
            "kernel": None if i % 5 else 'void k<float>("x")',
            "kcount": rng.randrange(2**40) if i % 5 == 0 else None,
            "iid": rng.randrange(2**45) if i % 5 == 0 else None,
            "op_seed": rng.random(),
            "bit_seed": None,
            "value": rng.choice([1e-300, 3.4028234663852886e38, 0.1, None]),
        }
        for i in range(n)
    ]
    store = Store.create(db)
    store.write_plan(record, sites)
    for mode in ("single_bit", "warp_random"):
        while held := store.claim("m", mode, 5000, "h:1:0", 600):
            store.record(
                [
                    Result(
                        site_id=s.id,
                        outcome=OUTCOMES[s.id % 5],
                        images_changed=s.id % 4,
                        nan=bool(s.id % 7 == 0),
                        max_abs_diff=None if s.id % 11 == 0 else rng.uniform(-1e30, 1e30),
                        golden_top1=None if s.id % 6 == 0 else s.id % 100,
                        faulty_top1=None if s.id % 4 == 0 else -1 if s.id % 13 == 0 else s.id * 7 % 100,
                        backend="pytorch",
                        isolation="process",
                        semantics="framework: ünïcode ‘quotes’",
                        runtime_s=rng.random() * 10,
                        detail=None if s.id % 3 else f"run/{s.id}",
                        **(NVBITFI if s.id == 1 else {}),
                    )
                    for s in held
                ],
                "h:1:0",
            )
    store.add_regret(
        [
            RegretRecord(
                model="zoo:x",
                sha256="ab" * 32,
                label="hardened",
                dataset="cifar10",
                source="bundled",
                images=500,
                repeats=3,
                seed=1,
                fault_model="noise",
                clean=0.84,
                noisy=0.80,
                noisy_low=float("nan"),
                noisy_high=float("nan"),
                regret=0.04,
                regret_low=0.01,
                regret_high=0.07,
            )
        ]
    )


def exported(db: Path | str) -> list[tuple]:
    return [row for batch in Store.open(db).export_batches() for row in batch]


def copy(src: str, dst: str) -> str:
    r = CliRunner().invoke(main, ["store", "copy", src, dst])
    assert r.exit_code == 0, r.output
    return r.output


def round_trip(tmp_path: Path, postgres, n: int) -> None:
    laptop, back = tmp_path / "laptop.db", tmp_path / "back.db"
    campaign_with_results(laptop, n)
    server = postgres.create("copy")
    out = copy(str(laptop), server)
    assert f"{n} site, {n} result" in out and "verified" in out
    copy(server, str(back))
    assert exported(back) == exported(laptop) == exported(server)
    assert len(exported(back)) == n
    top1 = [(r[EXPORT_FIELDS.index("golden_top1")], r[EXPORT_FIELDS.index("faulty_top1")]) for r in exported(back)]
    assert {g for g, _ in top1} > {None} and -1 in {f for _, f in top1}  # the top-1 columns came along
    assert Store.open(back).regret_rows()[0].regret == Store.open(laptop).regret_rows()[0].regret
    assert Store.open(back).campaign() == Store.open(laptop).campaign()
    for read in (Store.injections, Store.launch_counts, Store.redraws):
        assert read(Store.open(back)) == read(Store.open(laptop)) == read(Store.open(server)) and read(Store.open(back))


def test_a_campaign_round_trips_sqlite_postgresql_sqlite(tmp_path, postgres):
    round_trip(tmp_path, postgres, 3000)


@pytest.mark.long
def test_a_100000_result_campaign_round_trips(tmp_path, postgres):
    round_trip(tmp_path, postgres, 100_000)


def test_a_destination_with_a_campaign_is_refused_and_kept(tmp_path, postgres):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    campaign_with_results(a, 40)
    campaign_with_results(b, 30)
    server = postgres.create("taken")
    copy(str(b), server)
    for src, dst in ((str(a), server), (str(a), str(b)), (str(a), str(a))):
        p = subprocess.run([EXE, "store", "copy", src, dst], capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and p.stderr.startswith("Error: ") and len(p.stderr.strip().splitlines()) == 1
        assert "already holds a campaign" in p.stderr or "is the source itself" in p.stderr
    assert len(exported(server)) == len(exported(b)) == 30 and len(exported(a)) == 40
    assert not list(tmp_path.glob("*.partial*"))


def test_sites_held_in_the_source_are_pending_in_the_copy(tmp_path, postgres):
    db = tmp_path / "held.db"
    campaign_with_results(db, 10)
    store = Store.open(db)
    with store.engine.begin() as con:
        con.exec_driver_sql("UPDATE site SET status='pending' WHERE id > 8")
        con.exec_driver_sql("DELETE FROM result WHERE site_id > 8")
    store.claim("m", "single_bit", 5, "h:9:0", 600)
    server = postgres.create("held")
    assert "1 sites held by workers in the source are pending" in copy(str(db), server)
    assert Store.open(server).unfinished() == (2, 0) and Store.open(db).unfinished() == (1, 1)
