"""The comparison sentence of `report` (terminal, JSON, HTML) when a ratio is undefined: a model
without results yet must never read as a model without critical SDCs."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from fi_campaign.cli import main
from fi_campaign.store import Result, Store


def ok(*args: str) -> str:
    r = CliRunner().invoke(main, list(args), env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    return r.output


def sentences(db: Path, tmp_path: Path) -> tuple[str, list[str], str]:
    """(terminal text, JSON sentences, HTML text) of one store's report."""
    out = ok("--db", str(db), "report", "--avf")
    ok("--db", str(db), "report", "--json", str(tmp_path / "r.json"), "--html", str(tmp_path / "h"))
    doc = json.loads((tmp_path / "r.json").read_text())["stores"][0]
    page = " ".join((tmp_path / "h" / "index.html").read_text().split())
    return " ".join(out.split()), [c["sentence"] for c in doc["comparisons"]], page


def test_a_model_without_results_is_named_not_taken_for_no_critical_sdc(tmp_path, tiny_config):
    db = tmp_path / "w.db"
    ok("--db", str(db), "plan", str(tiny_config))
    ok("--db", str(db), "run", "--model", "baseline", "--workers", "1")
    text, json_sentences, page = sentences(db, tmp_path)
    for mode in ("single_bit", "warp_random"):
        assert f"{mode}: critical-SDC ratio baseline/hardened undefined (no results yet for hardened)." in text
    assert json_sentences == [
        f"{m}: the ratio of critical-SDC rates baseline/hardened is undefined (no results yet for hardened)."
        for m in ("single_bit", "warp_random")
    ]
    assert all(s in page for s in json_sentences)
    assert "neither" not in text and "neither" not in page


def test_two_models_with_results_and_no_critical_sdc_say_so(tmp_path, tiny_config):
    db = tmp_path / "m.db"
    ok("--db", str(db), "plan", str(tiny_config), "--injections", "3")
    store = Store.open(db)
    sites = [s for m in ("baseline", "hardened") for s in store.claim(m, "single_bit", 3, "test:1:0", 60)]
    store.record(
        [
            Result(
                site_id=s.id,
                outcome="masked",
                images_changed=0,
                nan=False,
                max_abs_diff=0.0,
                backend="pytorch",
                isolation="inprocess",
                semantics="framework",
                runtime_s=0.01,
            )
            for s in sites
        ]
    )
    text, json_sentences, _ = sentences(db, tmp_path)
    assert (
        "single_bit: critical-SDC ratio baseline/hardened undefined "
        "(both have results (3 and 3) and neither has a critical SDC)."
    ) in text
    assert (
        "warp_random: critical-SDC ratio baseline/hardened undefined (no results yet for baseline or hardened)." in text
    )
    assert json_sentences[0].endswith("is undefined (both have results (3 and 3) and neither has a critical SDC).")
    assert json_sentences[1].endswith("is undefined (no results yet for baseline or hardened).")
