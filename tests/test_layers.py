"""The layering rule of docs/ARCHITECTURE.md, read from the code: every import of every module of
fi_campaign (at the top, inside functions, under TYPE_CHECKING) goes to its own layer or a lower
one, and no two packages of one layer import each other both ways."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "fi_campaign"

# lowest first; a name is a module or package directly under fi_campaign ("" is fi_campaign itself)
LAYERS: list[tuple[str, set[str]]] = [
    (
        "bottom",
        {"", "errors", "limits", "checks", "stats", "stratified", "allocation", "classify", "heap", "templates"},
    ),
    ("libraries", {"models", "nvbitfi_tools"}),
    ("config", {"config"}),
    ("stages", {"store", "workload", "outputs", "plan"}),
    ("engine", {"engine"}),
    ("report", {"report"}),
    ("doctor", {"doctor"}),
    ("cli", {"cli"}),
]
RANK = {unit: rank for rank, (_, units) in enumerate(LAYERS) for unit in units}
# models and nvbitfi_tools, the two injection levels' libraries, import only these of the bottom
LIBRARIES_MAY_IMPORT = {"errors", "limits"}
# imports that break the rule today, each with the reason it is still there; the test fails when
# one of them goes away too, so that this list stays true
KNOWN: dict[tuple[str, str], str] = {
    (
        "fi_campaign.nvbitfi_tools.render",
        "fi_campaign.models.sampler",
    ): "the injection-info file names the lane sampler's specification (SPEC), which models/sampler.py "
    "defines for both injection levels",
}


def modules() -> dict[str, Path]:
    """fi_campaign's modules by dotted name, through the links to models/, nvbitfi_tools/, templates/."""
    found = {}
    for folder, _, files in os.walk(PACKAGE, followlinks=True):
        for f in files:
            if f.endswith(".py"):
                rel = (Path(folder) / f).relative_to(PACKAGE.parent).with_suffix("")
                parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
                found[".".join(parts)] = Path(folder) / f
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The fi_campaign modules ``name`` imports, anywhere in its code."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = (
                ".".join(package[: len(package) - node.level + 1] + [node.module or ""]).strip(".")
                if node.level
                else node.module or ""
            )
            # `from fi_campaign.x import y` imports the module fi_campaign.x.y when there is one
            out |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
    return {m for m in out if m == "fi_campaign" or m.startswith("fi_campaign.")}


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def test_every_package_has_a_layer(graph):
    assert {unit(m) for m in graph} - set(RANK) == set(), "a new package: give it a layer in LAYERS"


def test_no_module_imports_a_higher_layer(graph):
    found = {(m, t) for m, targets in graph.items() for t in targets if RANK[unit(t)] > RANK[unit(m)]}
    found |= {
        (m, t)
        for m, targets in graph.items()
        for t in targets
        if RANK[unit(m)] == RANK["models"] and unit(t) != unit(m) and unit(t) not in LIBRARIES_MAY_IMPORT
    }
    new = sorted(found - set(KNOWN))
    assert not new, "imports of a higher layer:\n" + "\n".join(f"  {m} -> {t}" for m, t in new)
    assert set(KNOWN) <= found, f"no longer imported, remove from KNOWN: {sorted(set(KNOWN) - found)}"


def test_packages_of_one_layer_import_each_other_one_way_only(graph):
    edges = {(unit(m), unit(t)) for m, targets in graph.items() for t in targets if unit(m) != unit(t)}
    both = sorted({tuple(sorted(e)) for e in edges if e[::-1] in edges})
    assert not both, f"packages importing each other: {both}"


def test_the_scan_sees_every_kind_of_import(graph):
    """The rule holds only if the scan sees imports in functions and relative ones."""
    assert "fi_campaign.models.sampler" in graph["fi_campaign.nvbitfi_tools.render"]  # inside a function
    assert "fi_campaign.errors" in graph["fi_campaign.models.zoo"]
    assert "fi_campaign.limits" in graph["fi_campaign.config"]  # `from fi_campaign import limits`
    assert any(name.startswith("fi_campaign.models.") for name in graph)  # through the link
