"""The store's guarantees, on SQLite and on a real PostgreSQL server alike: one schema from one
migration history, a plan whole or absent, claims that never overlap, results recorded only by
the worker still holding the site, leases that a heartbeat keeps and a vanished worker loses,
bad URLs refused in one sentence."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from bench import zero_cost
from fi_campaign.cli import main
from fi_campaign.store import Result, Store, StoreError, migrate
from fi_campaign.store.schema import meta

EXE = str(Path(sys.executable).with_name("fi-campaign"))
# written by fi-campaign 7cf2421 (schema_version 1, no migrations): plan data/store-v1.yaml, then
# run --mode single_bit, so half its sites have results
V1_STORE = Path(__file__).parent / "data" / "store-v1.db"


def raw(target: str) -> sa.Engine:
    from fi_campaign.store.backends import engine_for, parse_target

    return engine_for(parse_target(target))


def masked(site_id: int) -> Result:
    return zero_cost.masked(site_id)


def stored(target: str) -> list[tuple]:
    with Store.open(target).engine.connect() as con:
        return [tuple(r) for r in con.execute(sa.text("SELECT site_id, outcome FROM result ORDER BY site_id"))]


def _indexes(found: list) -> dict[str, tuple[tuple[str, ...], bool]]:
    """Each index's columns and whether it is partial (the reflected predicate's text differs by dialect)."""
    return {
        i["name"]: (tuple(i["column_names"]), any(k.endswith("_where") for k in i.get("dialect_options", {})))
        for i in found
    }


def test_migrations_build_the_schema_the_store_queries(new_store):
    target = new_store()
    zero_cost.plan(target, 3)
    store = Store.open(target)
    found = sa.inspect(store.engine)
    for table in meta.sorted_tables:
        assert {c["name"] for c in found.get_columns(table.name)} == {c.name for c in table.columns}, table.name
        assert _indexes(found.get_indexes(table.name)) == {
            i.name: (tuple(c.name for c in i.columns), i.dialect_options["sqlite"]["where"] is not None)
            for i in table.indexes
        }, table.name
    with store.engine.connect() as con:
        assert migrate.revision(con) == migrate.HEAD
    versions = sorted(
        p.name.split("_")[0] for p in (Path(migrate.__file__).parent / "migrations" / "versions").glob("0*.py")
    )
    assert tuple(versions) == migrate.REVISIONS


def test_a_plan_is_written_whole_or_not_at_all(new_store):
    target = new_store()
    sites = [{"model": "zero", "mode": "single_bit"} for _ in range(60_000)] + [{"model": None, "mode": "x"}]
    with pytest.raises(StoreError, match="nothing was stored"):
        Store.create(target).write_plan(zero_cost.record("bad"), sites)
    with raw(target).connect() as con:
        assert (
            con.execute(sa.text("SELECT (SELECT count(*) FROM campaign) + (SELECT count(*) FROM site)")).scalar() == 0
        )


def test_claims_are_disjoint_and_only_the_holder_records(new_store):
    target = new_store()
    zero_cost.plan(target, 10)
    a, b = Store.open(target), Store.open(target)
    mine = a.claim("zero", "single_bit", 4, "h:1:0", 60)
    theirs = b.claim("zero", "single_bit", 4, "h:2:0", 60)
    assert len(mine) == len(theirs) == 4 and not {s.id for s in mine} & {s.id for s in theirs}
    assert b.record([masked(s.id) for s in mine], "h:2:0") == []  # not b's sites
    assert len(a.record([masked(s.id) for s in mine], "h:1:0")) == 4
    assert a.record([masked(s.id) for s in mine], "h:1:0") == []  # never twice
    assert a.unfinished() == (2, 4)
    assert [w.owner for w in a.workers()] == []  # only workers that joined are listed


def test_an_expired_lease_goes_back_and_the_late_result_is_not_counted(new_store):
    target = new_store()
    zero_cost.plan(target, 4)
    store = Store.open(target)
    slow = store.claim("zero", "single_bit", 4, "elsewhere:1:0", 3.0)
    assert store.release_stale(lambda owner: True) == 0  # alive and within its lease
    time.sleep(3.5)
    assert store.release_stale(lambda owner: True) == 4  # another host: judged by its lease alone
    fast = store.claim("zero", "single_bit", 4, "elsewhere:2:0", 60)
    assert {s.id for s in fast} == {s.id for s in slow}
    assert store.record([masked(s.id) for s in slow], "elsewhere:1:0") == []
    assert len(store.record([masked(s.id) for s in fast], "elsewhere:2:0")) == 4
    assert len(stored(target)) == 4


def test_the_heartbeat_keeps_a_long_chunk_and_a_stuck_one_loses_it(new_store):
    import threading

    from fi_campaign.engine.heartbeat import Heartbeat
    from fi_campaign.store import Worker

    target = new_store()
    zero_cost.plan(target, 6)
    store, other = Store.open(target), Store.open(target)
    store.join(Worker(owner="h:1:0", host="h", pid=1, lease_s=1.5))
    held = store.claim("zero", "single_bit", 3, "h:1:0", 1.5)
    with Heartbeat(store, "h:1:0", 1.5, lambda o: True, threading.Lock()) as beat:
        beat.chunk(True, stuck_s=30)
        time.sleep(3.5)  # more than two leases
        assert other.release_stale(lambda o: True) == 0
        assert beat.beats >= 4
        beat.chunk(True, stuck_s=0.1)  # the chunk now overstays: no more renewals
        time.sleep(2.5)
        assert other.release_stale(lambda o: True) == len(held)
    (w,) = store.workers()
    assert (w.owner, w.state, w.host) == ("h:1:0", "lost", "h") and w.heartbeat_age_s > 1.5


def test_a_dead_local_owner_is_released_at_once(new_store):
    target = new_store()
    zero_cost.plan(target, 3)
    store = Store.open(target)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    from fi_campaign.engine.runner import owner_alive

    owner = f"{socket.gethostname()}:{dead.stdout.strip()}:0"
    store.claim("zero", "single_bit", 3, owner, 600)
    assert store.release_stale(owner_alive) == 3


def test_a_stop_inside_a_write_leaves_the_store_free_to_give_sites_back(new_store):
    """Ctrl-C or SIGTERM can land after a statement's first step (SQLite's UPDATE ... RETURNING
    then holds the write lock until the statement is freed); the worker, still handling the stop,
    gives its sites back, which must not wait on its own interrupted write (it waited out the
    30 s busy timeout, then gave up)."""
    target = new_store()
    zero_cost.plan(target, 4)
    store = Store.open(target)
    held = store.claim("zero", "single_bit", 4, "h:1:0", 60)

    def stopped_after_the_update(cursor, statement, parameters, context) -> bool:
        cursor.execute(statement, parameters)
        if statement.lstrip().upper().startswith("UPDATE SITE"):
            raise KeyboardInterrupt
        return True

    sa.event.listen(store.engine, "do_execute", stopped_after_the_update)
    try:
        store.record([masked(s.id) for s in held], "h:1:0")
    except KeyboardInterrupt:
        sa.event.remove(store.engine, "do_execute", stopped_after_the_update)
        store.release_owner("h:1:0")
    assert store.unfinished() == (4, 0) and stored(target) == []


def test_sixteen_worker_processes_never_share_a_site(new_store):
    target = new_store()
    zero_cost.plan(target, 1600)
    worked = zero_cost.run(target, 16, 4)
    claimed = [i for w in worked for i in w.claimed]
    assert sorted(claimed) == list(range(1, 1601))  # every site once, none twice
    assert all(w.recorded == w.claimed for w in worked)
    assert sum(w.cycles > 0 for w in worked) >= 8  # they really ran side by side
    assert [r[0] for r in stored(target)] == list(range(1, 1601))
    assert Store.open(target).unfinished() == (0, 0)


def test_a_store_of_schema_version_1_opens_upgraded_and_runs(tmp_path):
    db = tmp_path / "v1.db"
    shutil.copy(V1_STORE, db)
    with sa.create_engine(f"sqlite:///{db}").connect() as con:
        assert "alembic_version" not in sa.inspect(con).get_table_names()
        before = con.execute(sa.text("SELECT site_id, outcome FROM result ORDER BY site_id")).all()
    store = Store.open(db)
    with store.engine.connect() as con:
        assert migrate.revision(con) == migrate.HEAD
    assert stored(str(db)) == before and len(before) > 0
    r = CliRunner().invoke(main, ["--db", str(db), "run", "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert stored(str(db))[: len(before)] == before
    assert Store.open(db).unfinished() == (0, 0)
    assert [w.state for w in Store.open(db).workers()] == ["finished"]


def test_a_restarted_server_costs_no_result(postgres):
    target = postgres.create("restart")
    zero_cost.plan(target, 8)
    store = Store.open(target)
    held = store.claim("zero", "single_bit", 4, "h:1:0", 60)
    postgres.restart()  # every pooled connection is cut
    assert len(store.record([masked(s.id) for s in held], "h:1:0")) == 4
    held = store.claim("zero", "single_bit", 4, "h:1:0", 60)
    postgres.away(3.0)  # down for a while: the write waits for it to come back
    with pytest.raises(subprocess.CalledProcessError):  # down indeed when the write starts
        postgres.sql("postgres", "SELECT 1")
    assert len(store.record([masked(s.id) for s in held], "h:1:0")) == 4
    assert len(stored(target)) == 8 and store.unfinished() == (0, 0)


def one_sentence(args: list[str]) -> str:
    p = subprocess.run([EXE, *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr and p.stderr.startswith("Error: ")
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    return p.stderr


def test_bad_urls_are_one_sentence_and_exit_2(postgres, tmp_path):
    target = postgres.create("kept")
    zero_cost.plan(target, 5)
    base = sa.make_url(target).database
    cases = {
        "postgresql+psycopg://fi@/x?host=" + str(tmp_path / "nowhere"): "cannot connect",
        "postgresql+psycopg://fi@127.0.0.1:9/x": "cannot connect",
        postgres.url(base, user="secret:wrong"): "password authentication failed",
        postgres.url("absent"): 'database "absent" does not exist',
        postgres.url("postgres"): "holds no campaign store",
        "mysql://u@h/db": "not mysql",
        "postgresql://": "names no database",
    }
    for url, expected in cases.items():
        assert expected in one_sentence(["--db", url, "status"]), url
    assert "secret:wrong" not in one_sentence(["--db", postgres.url(base, user="secret:wrong"), "status"])
    assert len(stored(target)) == 0 and Store.open(target).unfinished() == (5, 0)


def test_a_read_only_server_store_is_refused_and_keeps_its_results(postgres, tiny_config):
    target = postgres.create("ro")
    assert CliRunner().invoke(main, ["--db", target, "plan", str(tiny_config)]).exit_code == 0
    store = Store.open(target)
    store.record([masked(s.id) for s in store.claim("baseline", "single_bit", 2, "h:1:0", 60)], "h:1:0")
    name = sa.make_url(target).database
    postgres.sql("postgres", f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    try:
        assert "read-only transaction" in one_sentence(["--db", target, "run", "--workers", "1"])
    finally:
        postgres.sql("postgres", f'ALTER DATABASE "{name}" SET default_transaction_read_only = off')
    assert len(stored(target)) == 2 and Store.open(target).unfinished() == (158, 0)
