"""models.powerfit (Clauset-style power-law fits), fitted fault-model files in models.powerlaw,
the ``fault-model`` CLI and a campaign planned and run with a fitted model."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from fi_campaign.cli import main
from fi_campaign.models import powerfit, powerlaw
from tests.conftest import shared_data

FU_CSV, PIPELINE_CSV = "raw_data_execution_units.csv", "raw_data_pipeline.csv"  # in ../shared/data/dsn2021-rtl
# The published tables carry 8 significant digits (float32 printed with %e); a refit that
# picks the same x_min agrees to a few 1e-8, so 1e-6 separates "same fit" from "another x_min".
RTOL = 1e-6


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def synthetic(seed: int, n: int, x_min: float, alpha: float, tail: float) -> np.ndarray:
    """A uniform body on (0, x_min) and a power-law tail (share ``tail``) above x_min."""
    rng = np.random.default_rng(seed)
    k = int(n * tail)
    return rng.permutation(
        np.concatenate([rng.uniform(0.0, x_min, n - k), powerlaw.PowerLaw(x_min, alpha).sample(rng.random(k))])
    )


def brute_force(x: np.ndarray, ks: str) -> tuple[float, float]:
    """The definition, one candidate at a time: what the vectorised scan must reproduce."""
    best = (np.inf, 0.0, 0.0)
    for x_min in np.unique(x)[:-1]:
        tail = np.sort(x[x >= x_min])
        alpha = 1.0 + tail.size / np.log(tail / x_min).sum()
        below = np.array([(tail < t).sum() for t in tail]) / tail.size
        upto = np.array([(tail <= t).sum() for t in tail]) / tail.size
        f = 1.0 - (tail / x_min) ** (1.0 - alpha)
        d = np.abs(f - below).max() if ks == "below" else max((f - below).max(), (upto - f).max())
        if d < best[0]:
            best = (d, x_min, alpha)
    return best[1], best[2]


# --- the fitter on samples with known parameters ------------------------------------------------


@pytest.mark.parametrize("ks, seeds", [("below", range(4)), ("sup", range(2))])
def test_fit_recovers_known_parameters(ks, seeds):
    x_min, alpha = 1.0, 2.5
    ratios = []
    for seed in seeds:
        f = powerfit.fit(synthetic(seed, 20_000, x_min, alpha, 0.5), ks=ks)
        ratios.append(f.x_min / x_min)
        assert abs(f.alpha - alpha) < 3 * f.sigma, (seed, f)
        assert f.sigma == pytest.approx((f.alpha - 1) / np.sqrt(f.n_tail))
        assert f.n == 20_000 and f.dropped == 0
    # KS picks x_min at or above the true one (any x_min in a power-law tail is one); it must
    # never reach into the uniform body, and stays within tens of per cent (1.0 to 1.28 here).
    assert min(ratios) > 0.95 and max(ratios) < 1.5
    assert 0.95 < float(np.median(ratios)) < 1.3


def test_fit_heavy_tail_like_ffma_common():
    f = powerfit.fit(synthetic(7, 20_000, 2.0, 1.4543958, 0.5))
    assert f.x_min >= 0.95 * 2.0
    assert abs(f.alpha - 1.4543958) < 3 * f.sigma


def test_alpha_at_the_true_x_min_is_the_mle():
    x = synthetic(3, 20_000, 0.01, 1.5, 0.3)
    f = powerfit.fit(x, x_min=0.01)
    tail = x[x >= 0.01]
    assert f.n_tail == tail.size
    assert f.alpha == pytest.approx(1.0 + tail.size / np.log(tail / 0.01).sum(), rel=1e-12)
    assert abs(f.alpha - 1.5) < 3 * f.sigma
    assert f.ks < 1.63 / np.sqrt(f.n_tail)  # the true law passes a 1 % KS test


@pytest.mark.parametrize("ks", powerfit.KS_KINDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_scan_matches_brute_force_with_ties(ks, seed):
    rng = np.random.default_rng(seed)
    x = np.round(synthetic(seed, 300, 1.0, 2.0, 0.6), 2 + seed)  # rounding makes ties
    x = x[x > 0]
    x_min, alpha = brute_force(x, ks)
    f = powerfit.fit(rng.permutation(x), ks=ks)
    assert f.x_min == x_min
    assert f.alpha == pytest.approx(alpha, rel=1e-9)


def test_unusable_samples_are_dropped_and_counted():
    x = np.concatenate([synthetic(5, 2000, 1.0, 2.0, 0.5), [np.nan, np.inf, -np.inf, 0.0, -3.0]])
    f = powerfit.fit(x)
    assert f.dropped == 5 and f.n == 2000
    assert np.isfinite(f.alpha) and f.x_min > 0


@pytest.mark.parametrize("samples", [[], [np.nan, np.inf], [2.0, 2.0, 2.0, np.nan], [0.0, -1.0]])
def test_too_few_distinct_samples_is_a_clear_error(samples):
    with pytest.raises(powerfit.FitError, match="at least 2 distinct positive finite samples"):
        powerfit.fit(samples)


def test_samples_one_ulp_apart_are_a_clear_error_not_a_crash():
    with pytest.raises(powerfit.FitError, match="too close together"):
        powerfit.fit([1e300, np.nextafter(1e300, 2e300), 1e300])


def test_fixed_x_min_above_every_sample_is_a_clear_error():
    with pytest.raises(powerfit.FitError, match="fewer than 2 distinct samples are >= x_min"):
        powerfit.fit([1.0, 2.0, 3.0], x_min=10.0)


# --- the published DSN 2021 tables, refitted from the RTL samples ------------------------------


def published(table: str) -> dict[tuple[str, str], powerlaw.PowerLaw]:
    return {(op, s): powerlaw.entry(table, op, s) for op in powerlaw.OPS for s in powerlaw.SIZES}


FU_REPRODUCED = [(op, s) for op in ("FADD", "FMUL", "FFMA", "IADD", "IMUL", "IMAD") for s in powerlaw.SIZES]


def test_cli_fit_of_the_fu_samples_reproduces_the_published_table(tmp_path):
    out = tmp_path / "fu.yaml"
    code, text = cli(
        "fault-model", "fit", str(shared_data("dsn2021-rtl", FU_CSV)), "--out", str(out), "--name", "fu-refit"
    )
    assert code == 0, text
    table = powerlaw.read_table(out)
    assert table.name == "fu-refit" and table.by == ("micro", "input_size")
    pub = published("dsn2021-fu")
    for op, size in FU_REPRODUCED:  # the 18 rows of FADD..IMAD, degenerate FFMA small included
        e = table.find(op, size)
        assert e.x_min == pytest.approx(pub[op, size].x_min, rel=RTOL), (op, size)
        assert e.alpha == pytest.approx(pub[op, size].alpha, rel=RTOL), (op, size)
    spot = {
        ("FADD", "common"): (2.0230031, 1.0568325, 92),
        ("FMUL", "common"): (3.0, 1.0678725, 64),
        ("FFMA", "common"): (2.0, 1.4543958, 16),
        ("FFMA", "big"): (1.0238367e-02, 1.1181921, 273),
    }
    for (op, size), (x_min, alpha, n_tail) in spot.items():
        e = table.find(op, size)
        assert (e.x_min, e.alpha, e.n_tail) == (pytest.approx(x_min, rel=RTOL), pytest.approx(alpha, rel=RTOL), n_tail)
    # MUFU (FSIN data) does not reproduce: x_min 0 twice, and 7.0958774e-08 is no sample value.
    assert table.find("MUFU", "common").x_min != pytest.approx(pub["MUFU", "common"].x_min, rel=RTOL)
    assert "FFMA small" in text and "3.4028237e+38" in text


def test_fit_of_the_pipeline_samples_reproduces_all_21_published_entries():
    pd = pytest.importorskip("pandas")
    data = pd.read_csv(shared_data("dsn2021-rtl", PIPELINE_CSV))
    for (op, size), law in published("dsn2021-pipeline").items():
        micro = powerlaw.DATA_MICRO.get(op, op)
        f = powerfit.fit(data.loc[(data.micro == micro) & (data.input_size == size), "relative_diff"].to_numpy())
        assert f.x_min == pytest.approx(law.x_min, rel=RTOL), (op, size)
        assert f.alpha == pytest.approx(law.alpha, rel=RTOL), (op, size)


# --- fitted fault-model files and campaigns ------------------------------------------------------


def write_csv(path: Path, groups: dict[tuple[str, str], np.ndarray]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["micro", "operation", "input_size", "relative_diff"])
        for (micro, size), values in groups.items():
            for v in values:
                w.writerow([micro, 2, size, "" if np.isnan(v) else repr(float(v))])
    return path


@pytest.fixture
def fitted(tmp_path) -> Path:
    """A fault-model file fitted by the CLI from synthetic FFMA common / FSIN big samples."""
    data = write_csv(
        tmp_path / "samples.csv",
        {
            ("FFMA", "common"): np.append(synthetic(1, 1500, 2.0, 1.4543958, 0.4), np.nan),
            ("FSIN", "big"): synthetic(2, 800, 0.5, 2.0, 0.5),
            ("FMUL", "small"): np.array([3.0, 3.0]),  # too few distinct values: reported, left out
        },
    )
    out = tmp_path / "fitted.yaml"
    code, text = cli("fault-model", "fit", str(data), "--out", str(out), "--name", "synthetic-fit")
    assert code == 0, text
    assert "Skipped FMUL small: a power-law fit needs at least 2 distinct" in text
    assert "Wrote fault model 'synthetic-fit' (2 entries)" in text
    return out


def test_fitted_file_format_and_entry_lookup(fitted):
    raw = yaml.safe_load(fitted.read_text())
    assert raw["format"] == powerlaw.FORMAT and raw["name"] == "synthetic-fit"
    assert raw["by"] == ["micro", "input_size"] and raw["sources"][0]["rows"] == 1500 + 1 + 800 + 2
    e = {(x["op"], x["size"]): x for x in raw["entries"]}
    assert set(e) == {("FFMA", "common"), ("MUFU", "big")}  # FSIN data stands for MUFU
    assert e["FFMA", "common"]["dropped"] == 1 and e["FFMA", "common"]["n"] == 1500
    assert {"x_min", "alpha", "n_tail", "n", "ks", "sigma", "group"} <= set(e["FFMA", "common"])
    law = powerlaw.entry(str(fitted), "FFMA", "common")
    assert (law.x_min, law.alpha) == (e["FFMA", "common"]["x_min"], e["FFMA", "common"]["alpha"])
    with pytest.raises(powerlaw.TableError, match="has no entry for FFMA small"):
        powerlaw.entry(str(fitted), "FFMA", "small")
    # the built-in tables are unchanged
    assert powerlaw.entry("dsn2021-fu", "FFMA", "common") == powerlaw.PowerLaw(2.0, 1.4543958)
    with pytest.raises(powerlaw.TableError, match="unknown power-law table"):
        powerlaw.entry(str(fitted.parent / "missing.yaml"), "FFMA", "common")


def campaign_config(tmp_path: Path, fault_model: dict, modes=("warp_random",)) -> Path:
    from fi_campaign.models import resnet, zoo

    ckpt = tmp_path / "model.pt"
    if not ckpt.exists():
        zoo.save(ckpt, resnet.build(resnet.Arch()), zoo.Meta(resnet.Arch(), "cifar10"))
    path = tmp_path / "campaign.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "fitted",
                "models": {"m": str(ckpt)},
                "modes": list(modes),
                "injections": 5,
                "images": {"source": "bundled", "count": 10},
                "fault_model": fault_model,
            }
        )
    )
    return path


def stored_fault_model(db: Path) -> dict:
    with sqlite3.connect(db) as con:
        return json.loads(con.execute("SELECT fault_model FROM campaign").fetchone()[0])


def test_campaign_with_a_fitted_model_records_it(tmp_path, fitted):
    config = campaign_config(tmp_path, {"table": str(fitted), "op": "FFMA", "size": "common"})
    db = tmp_path / "c.db"
    code, text = cli("--db", str(db), "plan", str(config))
    assert code == 0, text
    fm = stored_fault_model(db)
    law = powerlaw.entry(str(fitted), "FFMA", "common")
    assert fm["name"] == "synthetic-fit" and fm["kind"] == "fitted"
    assert fm["path"] == str(fitted.resolve()) and fm["table"] == str(fitted)
    assert fm["sha256"] == powerlaw.read_table(fitted).sha256
    assert fm["entries"] == {"common": [law.x_min, law.alpha]}
    assert fm["fit"]["common"]["group"] == {"micro": "FFMA", "input_size": "common"}
    assert fm["sources"] == [str((tmp_path / "samples.csv").resolve())]
    assert (fm["op"], fm["size"]) == ("FFMA", "common")
    fitted.write_text("changed after planning")  # the run replays the stored parameters
    code, text = cli("--db", str(db), "run")
    assert code == 0, text
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM result").fetchone()[0] == 5
    code, text = cli("--db", str(db), "report")
    assert code == 0, text
    assert "warp_random fault model: synthetic-fit (fitted, " in " ".join(text.split())


def test_campaign_with_a_built_in_model_records_its_name(tmp_path):
    config = campaign_config(tmp_path, {"table": "dsn2021-pipeline", "op": "FMUL", "size": "common"})
    db = tmp_path / "c.db"
    assert cli("--db", str(db), "plan", str(config))[0] == 0
    fm = stored_fault_model(db)
    assert fm["name"] == "dsn2021-pipeline" and fm["kind"] == "built-in" and fm["path"] is None
    assert fm["entries"] == {"common": [3.0, 1.0411011754028192]}


def test_plan_refuses_missing_and_degenerate_fitted_entries(tmp_path, fitted):
    config = campaign_config(tmp_path, {"table": str(fitted), "op": "FFMA", "size": "by-value"})
    code, out = cli("--db", str(tmp_path / "a.db"), "plan", str(config))
    assert code == 2 and "has no entry for FFMA small" in out and "Traceback" not in out
    doc = powerlaw.table_document(
        "flt-max",
        ["micro", "input_size"],
        [],
        [
            {
                "group": {"micro": "FFMA", "input_size": "small"},
                "x_min": powerlaw.FLT_MAX * 1.0000001,
                "alpha": 4.4e5,
                "ks": 0.19,
                "sigma": 2e5,
                "n_tail": 5,
                "n": 327,
                "dropped": 1,
            }
        ],
    )
    bad = tmp_path / "flt-max.yaml"
    bad.write_text(yaml.safe_dump(doc))
    config = campaign_config(tmp_path, {"table": str(bad), "op": "FFMA", "size": "small"})
    code, out = cli("--db", str(tmp_path / "b.db"), "plan", str(config))
    assert code == 2
    assert out.startswith("Error: fault_model flt-max FFMA small") and "FLT_MAX" in out and "degenerate" in out
    config = campaign_config(tmp_path, {"table": "dsn2021-fu", "op": "MUFU", "size": "big"})
    code, out = cli("--db", str(tmp_path / "c.db"), "plan", str(config))
    assert code == 2 and "dsn2021-fu MUFU big" in out and "every draw 0" in out
    # single_bit alone never draws from the table, so the degenerate entry does not matter
    config = campaign_config(tmp_path, {"table": "dsn2021-fu", "op": "MUFU", "size": "big"}, ("single_bit",))
    assert cli("--db", str(tmp_path / "d.db"), "plan", str(config))[0] == 0


# --- show ---------------------------------------------------------------------------------------


def test_show_lists_the_built_in_tables_and_flags_degenerate_entries():
    code, out = cli("fault-model", "show")
    assert code == 0, out
    assert "Built-in table dsn2021-fu" in out and "Built-in table dsn2021-pipeline" in out
    flagged = sorted(line.split(" is degenerate")[0] for line in out.splitlines() if " is degenerate (" in line)
    assert flagged == ["FFMA small", "MUFU big", "MUFU small"]
    assert "FLT_MAX" in out and "makes every draw 0" in out and "warp_random refuses it" in out


def test_show_fitted_with_data_and_plot(tmp_path, fitted):
    png = tmp_path / "fit.png"
    code, out = cli("fault-model", "show", str(fitted), "--data", str(tmp_path / "samples.csv"), "--plot", str(png))
    assert code == 0, out
    assert "synthetic-fit" in out and "refit x_min" in out and f"Wrote {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["fit", "no-such.csv"], "CSV file no-such.csv does not exist."),
        (["fit", "{nocol}"], "has no relative_diff column"),
        (["fit", "{samples}", "--by", "micro,site"], "has no site column"),
        (["show", "no-such-model"], "unknown power-law table 'no-such-model'"),
        (["show", "{samples}"], "is not a fault-model file"),
        (["show", "--plot", "x.png"], "--plot needs --data CSV"),
        (["show", "dsn2021-fu", "--op", "FOO"], "dsn2021-fu has no entry for op FOO"),
    ],
)
def test_bad_inputs_give_one_error_line(tmp_path, args, message):
    (tmp_path / "nocol.csv").write_text("micro,input_size,value\nFADD,small,1.0\n")
    write_csv(tmp_path / "samples.csv", {("FFMA", "common"): np.array([1.0, 2.0, 3.0])})
    args = [a.format(nocol=tmp_path / "nocol.csv", samples=tmp_path / "samples.csv") for a in args]
    code, out = cli("fault-model", *args)
    assert code == 2, out
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], out
    assert "Traceback" not in out
