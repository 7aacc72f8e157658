"""The demo campaign's HTML report in headless Chromium: the committed checkpoints, planned by
`plan` with no config (the demo, fewer injections so the test stays short), run, evaluated for
regret into the same store, reported; every number read back from the rendered DOM equals
`report --csv` / `report --json`."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

from tests.test_report import Dom, check_avf_rows, check_figures, check_screenshot, ok, render_in_chromium


def test_demo_campaign_report_renders_in_chromium(tmp_path):
    db = str(tmp_path / "demo.db")
    ok("--db", db, "plan", "--injections", "60")
    ok("--db", db, "run", "--workers", "1")
    ok(
        "--db",
        db,
        "evaluate",
        "--regret",
        "zoo:resnet20-cifar10-baseline",
        "zoo:resnet20-cifar10-hardened",
        "--images",
        "40",
        "--repeats",
        "1",
        "--device",
        "cpu",
    )
    out = tmp_path / "report"
    ok(
        "--db",
        db,
        "report",
        "--html",
        str(out),
        "--csv",
        str(tmp_path / "avf.csv"),
        "--json",
        str(tmp_path / "r.json"),
        "--fit-raw",
        "1000",
    )
    with open(tmp_path / "avf.csv", newline="") as f:
        table = list(csv.DictReader(f))
    doc = json.loads((tmp_path / "r.json").read_text())["stores"][0]

    shot, dom = render_in_chromium(out / "index.html", tmp_path)
    check_screenshot(shot)
    page = Dom.of(dom)
    check_figures(page, {"avf", "units", "bits", "regret"})
    for name in ("avf", "units", "bits", "regret"):
        assert (out / f"{name}.png").stat().st_size > 0
        assert (out / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    check_avf_rows(page, table)

    ident = doc["identity"]
    assert ident["name"] == "demo" and ident["seed"] == 2022 and ident["backend"] == "pytorch"
    for name, m in ident["models"].items():
        cells = page.row("model", model=name)
        assert cells["sha256"]["text"] == m["sha256"]
        assert cells["clean_accuracy"]["data-value"] == f"{m['clean_accuracy']:.6f}"
        assert cells["clean_accuracy"]["text"] == f"{100 * m['clean_accuracy']:.2f}%"
    for s in doc["strata"]:
        cells = page.row("stratum", model=s["model"], mode=s["mode"])
        assert {f: int(cells[f]["text"]) for f in ("planned", "done", "counted", "not_injected", "nan")} == {
            f: s[f] for f in ("planned", "done", "counted", "not_injected", "nan")
        }
        assert (s["planned"], s["done"]) == (60, 60)
    assert len(doc["comparisons"]) == 2
    for c in doc["comparisons"]:
        cells = page.row("comparison", mode=c["mode"], reference="baseline", candidate="hardened")
        if c["ratio"] is None:
            assert cells["ratio"]["text"] == "-"
        else:
            assert cells["ratio"]["data-value"] == f"{c['ratio']:.6f}" and cells["ratio"]["text"] == f"{c['ratio']:.2f}"
            assert cells["ci"]["text"] == f"[{c['ci_low']:.2f}, {c['ci_high']:.2f}]"
        assert cells["significant"]["data-value"] == ("yes" if c["significant"] else "no")
        assert c["sentence"] in " ".join(page.text.split())
    units = page.rows("unit")
    assert len(units) == len(doc["breakdown"]["rows"]) > 0
    for u in doc["breakdown"]["rows"]:
        cells = page.row("unit", model=u["model"], mode=u["mode"], unit=u["unit"])
        assert (int(cells["n"]["text"]), int(cells["k"]["text"])) == (u["n"], u["k"])
        assert cells["rate"]["data-value"] == f"{u['rate']:.6f}" and cells["rate"]["text"] == f"{100 * u['rate']:.2f}"
        assert cells["ci"]["text"] == f"[{100 * u['ci_low']:.2f}, {100 * u['ci_high']:.2f}]"
    assert len(page.rows("fit")) == 12
    for r, cells in zip(doc["regret"], (row["cells"] for row in page.rows("regret")), strict=False):
        assert cells["clean"]["text"] == f"{100 * r['clean']:.2f}"
        assert cells["regret"]["text"] == f"{100 * r['regret']:.2f}"
        assert cells["regret_ci"]["text"] == f"[{100 * r['regret_low']:.2f}, {100 * r['regret_high']:.2f}]"
    assert len(doc["regret"]) == 2


def piped(*args: str, columns: int = 80) -> str:
    """A command's stdout through a pipe (not a terminal) at COLUMNS columns, as `| less` sees it."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    p = subprocess.run(
        [sys.executable, "-c", "from fi_campaign.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "COLUMNS": str(columns)},
    )
    assert p.returncode == 0, p.stderr
    return p.stdout


def table_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line[:1] in "┏┃┡│├└"]


def test_demo_report_and_status_piped_at_80_columns_cut_no_cell(tmp_path):
    """`fi-campaign --db demo.db report --avf` and `status` piped at 80 columns: every table (AVF,
    causes, per-bit, FIT, status, workers) fits, and no cell is cut; what does not fit is below."""
    db = str(tmp_path / "demo.db")
    ok("--db", db, "plan", "--injections", "100")
    ran = ok("--db", db, "run", "--workers", "1")
    assert ran.strip().splitlines()[-1] == f"Ran 400 injections. Next: fi-campaign --db {db} report --avf"

    out = piped("--db", db, "report", "--avf", "--fit-raw", "1000")
    titles = (
        "AVF of campaign 'demo'",
        "Critical SDCs with NaN/Inf in the outputs and without",
        "single_bit critical SDCs per flipped bit",
        "FIT per model x mode",
    )
    flat = " ".join(out.split())
    assert all(t in flat for t in titles), out
    assert "…" not in out and "..." not in out
    assert table_lines(out) and max(len(line) for line in table_lines(out)) <= 80
    ok("--db", db, "report", "--json", str(tmp_path / "r.json"))
    doc = json.loads((tmp_path / "r.json").read_text())["stores"][0]
    lines = out.splitlines()
    causes = lines[next(i for i, line in enumerate(lines) if "Critical SDCs with NaN/Inf" in line) :]
    for s in doc["causes"]["split"]:  # every cell whole: in its row, or on the row's line below the table
        row = next(
            line for line in table_lines("\n".join(causes)) if f"│ {s['model']} " in line and f" {s['mode']} " in line
        )
        below = next((line for line in causes if line.startswith(f"{s['model']} {s['mode']}: ")), "")
        cells = [
            f" {s['critical']} ",
            f"{s['nan']}/{s['n']}",
            f"{s['finite']}/{s['n']}",
            f"[{100 * s['nan_low']:.2f}, {100 * s['nan_high']:.2f}]%",
            f"[{100 * s['finite_low']:.2f}, {100 * s['finite_high']:.2f}]%",
        ]
        assert all(c in row or c in below for c in cells), (row, below)
    hit = [b for b in doc["causes"]["bits"] if b["k"]]
    assert hit
    for b in hit:
        row = next(line for line in table_lines(out) if f"│ {b['model']} " in line and f"│ {b['bit']:>3} │" in line)
        assert f"{b['k']}/{b['n']}" in row and f"{100 * b['rate']:.2f}%" in row

    status = piped("--db", db, "status")
    assert "…" not in status and max(len(line) for line in table_lines(status)) <= 80
    assert "1 workers (0 running)" in status and " since " in status and " start " in status
    assert "a worker's over its whole life" in " ".join(status.split())
    for s in doc["strata"]:
        assert any(
            f"│ {s['model']} " in line and f" {s['mode']} " in line and f" {s['done']}/{s['planned']} " in line
            for line in table_lines(status)
        )
