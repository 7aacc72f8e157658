"""The wheel installs one import package, fi_campaign, so a user's own `models` package (the name
almost every ML project has) imports beside it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_one_top_level_package(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), ROOT],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("fi_campaign-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"fi_campaign"}
    top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["fi_campaign"]
    data = (
        "models/zoo/resnet20-cifar10-baseline.pt",
        "templates/report/report.html.j2",
        "nvbitfi_tools/tool/fi_tool.cu",
    )
    for part in data:
        assert f"fi_campaign/{part}" in names, part


def test_a_users_own_models_package_imports_beside_fi_campaign(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("")
    (tmp_path / "models" / "unet.py").write_text("class UNet:\n    depth = 4\n")
    (tmp_path / "study.py").write_text(
        textwrap.dedent("""
        from models.unet import UNet
        from fi_campaign.models.zoo import load
        import fi_campaign.models, models

        model, meta = load("zoo:resnet20-cifar10-baseline")
        print(UNet.depth, meta.arch.depth, models.__file__ != fi_campaign.models.__file__)
        """)
    )
    out = subprocess.run([sys.executable, "study.py"], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["4", "20", "True"]
