"""The wheels that travel with the working tree to the GPU machine (``.whl/``, from
``make gpu-wheels``), and installing fi-campaign from them beside the machine's own PyTorch.

On the GPU machine pip's resolver runs against the machine's real packages (``--dry-run``), so
it says which wheels to install and that none of the image's own packages would be replaced;
they are then installed with ``--target`` into a scratch folder put on PYTHONPATH, which
leaves the image's site-packages untouched. On the CPU machine (Python 3.11) the same
resolution is rehearsed for Python 3.12 manylinux x86_64 against stand-ins for the image's
packages (``image-packages.txt``), and what installs here is installed for real.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
CARRIED_LIST = HERE / "wheels.txt"
IMAGE_LIST = HERE / "image-packages.txt"
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
BUILD_ONLY = {"setuptools"}  # carried to build fi-campaign's wheel there, never installed beside the image
PROTECTED = {"torch", "torchvision", "numpy", "triton"}  # the image's, which an install must never replace
UNKNOWN_VERSION = "9999"  # a stand-in whose version is not known: any lower bound holds


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Wheel:
    path: Path
    name: str  # canonical
    version: str
    pure: bool  # py3-none-any: installs on any Python

    @classmethod
    def of(cls, path: Path) -> Wheel:
        parts = path.name[: -len(".whl")].split("-")
        return cls(
            path, canonical(parts[0]), parts[1], parts[-3:] == ["py3", "none", "any"] or parts[-2:] == ["none", "any"]
        )


def carried(folder: Path) -> list[Wheel]:
    return sorted((Wheel.of(p) for p in folder.glob("*.whl")), key=lambda w: w.name)


def listed(path: Path = CARRIED_LIST) -> dict[str, str]:
    """name -> pinned version (or '' when a line names no version) of a requirements-style list."""
    out = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[canonical(name)] = version.strip()
    return out


def missing_from(folder: Path) -> list[str]:
    """The listed wheels ``folder`` lacks (at their pinned version)."""
    have = {(w.name, w.version) for w in carried(folder)}
    return [f"{n}=={v}" for n, v in listed().items() if (n, v) not in have]


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def write_stand_ins(folder: Path) -> dict[str, str]:
    """One empty wheel per image package, at the image's version where known, else this
    environment's, else ``UNKNOWN_VERSION``; returns name -> where its version came from."""
    folder.mkdir(parents=True, exist_ok=True)
    origin = {}
    for name, version in listed(IMAGE_LIST).items():
        if version:
            origin[name] = "image"
        elif (here := installed_version(name)) is not None:
            version, origin[name] = here, "this machine's"
        else:
            version, origin[name] = UNKNOWN_VERSION, "unknown"
        dist = name.replace("-", "_")
        with zipfile.ZipFile(folder / f"{dist}-{version}-py3-none-any.whl", "w") as z:
            z.writestr(
                f"{dist}-{version}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            )
            z.writestr(
                f"{dist}-{version}.dist-info/WHEEL",
                "Wheel-Version: 1.0\nGenerator: fi-campaign gpu-check\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
            )
            z.writestr(f"{dist}-{version}.dist-info/RECORD", "")
    return origin


def resolution(report: Path) -> dict[str, dict]:
    """What a ``pip install --dry-run --report`` would install: name -> {version, file}."""
    data = json.loads(report.read_text(encoding="utf-8"))
    out = {}
    for item in data.get("install", []):
        meta = item.get("metadata", {})
        url = item.get("download_info", {}).get("url", "")
        out[canonical(meta.get("name", "?"))] = {"version": meta.get("version"), "file": url.rsplit("/", 1)[-1]}
    return out


def unmet(dist: str = "fi-campaign", extras: tuple[str, ...] = ("bench",)) -> list[str]:
    """Requirements of ``dist`` (and of its extras) that the running environment does not
    satisfy, one readable line each; empty when everything is there."""
    from packaging.requirements import Requirement

    problems = []
    for text in metadata.requires(dist) or []:
        req = Requirement(text)
        wanted = req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras))
        if not wanted:
            continue
        have = installed_version(req.name)
        if have is None:
            problems.append(f"{req.name} is not installed ({req})")
        elif not req.specifier.contains(have, prereleases=True):
            problems.append(f"{req.name} {have} does not meet {req}")
    return problems
