"""Finds a user's NVBitFI build from NVBITFI_HOME and says what is missing; reads files only.

Layout (docs/NVBITFI-INTERFACE.md, "Building"): ``$NVBITFI_HOME/profiler/profiler.so`` and
``$NVBITFI_HOME/injector/injector.so``, built in place by each folder's Makefile, which finds
NVBit at ``../../../core`` (so NVBitFI sits at ``nvbit_release/tools/nvbitfi``). ``make DUMMY=1``
builds the no-write injector under the same name ``injector.so``; this project looks for such a
build copied to ``injector/injector-dummy.so`` (our convention, not NVBitFI's).

The dialect is read from the build's own sources: ``common/arch.h`` enums first, then
``scripts/params.py`` constants.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fi_campaign.nvbitfi_tools.errors import NvbitfiError
from fi_campaign.nvbitfi_tools.isa import dialect as get_dialect

DUMMY_INJECTOR = "injector/injector-dummy.so"


class InstallError(NvbitfiError):
    pass


@dataclass(frozen=True)
class Missing:
    piece: str  # home, profiler, injector, dummy_injector, nvbit_core, dialect
    path: Path | None
    advice: str  # one sentence
    required: bool = True  # False: the campaign runs without it, with less checking


@dataclass(frozen=True)
class Install:
    home: Path | None
    profiler: Path | None
    injector: Path | None
    dummy_injector: Path | None
    nvbit_core: Path | None  # libnvbit.a, needed only to (re)build the tools
    dialect: str | None
    dialect_from: str  # where the dialect came from: a source file, "config" or "unknown"
    missing: tuple[Missing, ...]
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not any(m.required for m in self.missing)


def locate(
    home: str | Path | None = None, dialect: str | None = None, environ: Mapping[str, str] | None = None
) -> Install:
    """What is in ``home`` (default: $NVBITFI_HOME); ``dialect`` is the campaign config's, if any."""
    if dialect is not None:
        get_dialect(dialect)
    environ = os.environ if environ is None else environ
    raw = home if home is not None else environ.get("NVBITFI_HOME")
    if not raw:
        return Install(
            None,
            None,
            None,
            None,
            None,
            dialect,
            "config" if dialect else "unknown",
            (
                Missing(
                    "home",
                    None,
                    "Set NVBITFI_HOME to your NVBitFI build, the folder "
                    "nvbit_release/tools/nvbitfi (see docs/NVBITFI.md).",
                ),
            ),
        )
    root = Path(raw).expanduser()
    if not root.is_dir():
        return Install(
            root,
            None,
            None,
            None,
            None,
            dialect,
            "config" if dialect else "unknown",
            (
                Missing(
                    "home",
                    root,
                    f"NVBITFI_HOME points at {root}, which is not a folder; "
                    "set it to your nvbit_release/tools/nvbitfi build.",
                ),
            ),
        )
    root = root.resolve()
    missing: list[Missing] = []
    warnings: list[str] = []
    profiler = _file(root / "profiler" / "profiler.so")
    injector = _file(root / "injector" / "injector.so")
    dummy = _file(root / DUMMY_INJECTOR)
    core = _file(root.parent.parent / "core" / "libnvbit.a")
    own = (root / "fi-campaign-tool.json").is_file() or dialect == "fi-campaign"
    for piece, found, folder in (("profiler", profiler, "profiler"), ("injector", injector, "injector")):
        if found is None:
            missing.append(
                Missing(
                    piece,
                    root / folder / f"{piece}.so",
                    "Build fi-campaign's tool with 'fi-campaign injector build --nvbit DIR' "
                    "(NVBit >= 1.7) and point nvbitfi.home at its folder."
                    if own
                    else f"Build the {piece} with 'make' in {root / folder} (NVBit 1.5.5 and "
                    "CUDA 11 for the reference Titan V setup).",
                )
            )
    if (profiler is None or injector is None) and core is None and not own:
        missing.append(
            Missing(
                "nvbit_core",
                root.parent.parent / "core" / "libnvbit.a",
                "Unpack an NVBit release and place NVBitFI at nvbit_release/tools/nvbitfi, "
                "so its Makefiles find NVBit in ../../../core.",
                required=False,
            )
        )
    if dummy is None:
        missing.append(
            Missing(
                "dummy_injector",
                root / DUMMY_INJECTOR,
                f"Build the injector once with 'make DUMMY=1' and copy it to {root / DUMMY_INJECTOR}"
                ", so a fault-free campaign can check the workload and time the runs.",
                required=False,
            )
        )
    if _makefile_sets_dummy(root / "injector" / "Makefile"):
        warnings.append("injector/Makefile sets DUMMY=1, so injector.so may write no faults at all.")
    detected, source = detect_dialect(root)
    chosen, chosen_from = detected, source
    if detected and dialect and detected != dialect:
        missing.append(
            Missing(
                "dialect",
                root,
                f"The build's {source} looks like the {detected} dialect but "
                f"the campaign says {dialect}; fix the config or point NVBITFI_HOME at "
                "the right build.",
            )
        )
        chosen, chosen_from = dialect, "config"
    elif not detected:
        chosen, chosen_from = dialect, "config" if dialect else "unknown"
        if not dialect:
            missing.append(
                Missing(
                    "dialect",
                    root,
                    "Name the build's dialect (nvlabs, carol or pr2022) in "
                    "the campaign config: its sources (common/arch.h, scripts/params.py) "
                    "do not say.",
                )
            )
    return Install(root, profiler, injector, dummy, core, chosen, chosen_from, tuple(missing), tuple(warnings))


def require(install: Install) -> Install:
    """The install if every required piece is there; else the first missing piece's advice."""
    for m in install.missing:
        if m.required:
            raise InstallError(m.advice)
    return install


def detect_dialect(root: str | Path) -> tuple[str | None, str]:
    """(dialect, the file that said so) from the build's sources, or (None, "unknown")."""
    root = Path(root)
    if (root / "fi-campaign-tool.json").is_file():  # written by nvbitfi_tools.build
        return "fi-campaign", "fi-campaign-tool.json"
    arch = root / "common" / "arch.h"
    text = _read(arch)
    if text is not None:
        bfms = _enum(text, "BitFlipModel")
        groups = _enum(text, "GroupType")
        found = _classify(bfms, groups)
        if found:
            return found, "common/arch.h"
    text = _read(root / "scripts" / "params.py")
    if text is not None:
        consts = {k: int(v) for k, v in re.findall(r"(?m)^([A-Z][A-Z0-9_]*)\s*=\s*(\d+)\b", text)}
        found = _classify(consts, consts)
        if found:
            return found, "scripts/params.py"
    if (root / "injector" / "flex_grip_error_model.h").is_file():
        return "carol", "injector/flex_grip_error_model.h"
    return None, "unknown"


def _classify(bfms: dict[str, int], groups: dict[str, int]) -> str | None:
    if "FLEXGRIP_RELATIVE_FU" in bfms or bfms.get("WARP_RANDOM_VALUE") == 7:
        return "carol"
    if bfms.get("WARP_RANDOM_VALUE") == 4 or "G_FP16" in groups:
        return "pr2022"
    if "FLIP_SINGLE_BIT" in bfms and not any(k.startswith("WARP_") for k in bfms) and "G_GP" in groups:
        if groups.get("G_GP") == 7 and bfms.get("ZERO_VALUE") == 3:
            return "nvlabs"
    return None


def _enum(text: str, name: str) -> dict[str, int]:
    """Member values of a C enum, following implicit numbering; comments removed first."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    m = re.search(r"enum\s+" + name + r"\s*\{(.*?)\}", text, flags=re.S)
    if not m:
        return {}
    out: dict[str, int] = {}
    value = -1
    for item in m.group(1).split(","):
        item = item.strip()
        if not item:
            continue
        key, _, explicit = item.partition("=")
        explicit = explicit.strip()
        value = int(explicit, 0) if re.fullmatch(r"0[xX][0-9a-fA-F]+|\d+", explicit) else value + 1
        out[key.strip()] = value
    return out


def _makefile_sets_dummy(path: Path) -> bool:
    text = _read(path)
    return bool(text and re.search(r"(?m)^\s*DUMMY\s*[:?]?=\s*1\s*$", text))


def _file(path: Path) -> Path | None:
    return path if path.is_file() else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


# --- the kernel log, for Xid lines (GPU errors the driver reports) -------------------------------


@dataclass(frozen=True)
class Xid:
    code: int  # e.g. 13 graphics exception, 31 MMU fault, 43 channel stopped, 79 fell off the bus
    device: str  # the PCI address the driver printed
    detail: str  # the rest of the line
    pid: int | None
    line: str


_XID = re.compile(r"NVRM: Xid \((?P<device>[^)]*)\): (?P<code>\d+)(?:,\s*(?P<detail>.*))?")


def xid_lines(text: str) -> list[Xid]:
    """Every NVIDIA Xid line of a kernel-log text (dmesg or /dev/kmsg records), in order."""
    out = []
    for line in text.splitlines():
        m = _XID.search(line)
        if m:
            detail = (m["detail"] or "").strip()
            pid = re.search(r"\bpid=(\d+)", detail)
            out.append(Xid(int(m["code"]), m["device"], detail, int(pid[1]) if pid else None, line.strip()))
    return out


def kernel_log_delta(before: str | None, after: str) -> str:
    """The lines of ``after`` that the kernel logged since ``before`` was read, by content.

    The kernel log is a ring buffer: once full, every new line pushes the oldest one out, so
    ``after`` can be no longer than ``before`` and a length slice would miss the new lines.
    What survived from ``before`` is a prefix of ``after`` equal to a suffix of ``before``;
    the longest such overlap is taken (NVBitFI's script looks for the last line seen before
    the run, which is the same test when lines carry timestamps), and everything after it is
    new. With no overlap at all, every line of ``after`` is new.
    """
    old, new = (before or "").splitlines(), after.splitlines()
    if not old or not new:
        return "\n".join(new)
    for start in (i for i, line in enumerate(old) if line == new[0]):
        overlap = len(old) - start
        if new[:overlap] == old[start:]:
            return "\n".join(new[overlap:])
    return "\n".join(new)


def kernel_log_readable(kmsg: str | Path = "/dev/kmsg", dmesg: str = "dmesg") -> bool:
    """Whether this user can read the kernel log, so a run's Xid lines can be seen at all.

    With kernel.dmesg_restrict=1 a non-root user cannot; then a missing Xid proves nothing and
    the caller must say so rather than report "no GPU error".
    """
    try:
        fd = os.open(kmsg, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        pass
    else:
        try:
            os.read(fd, 8192)
            return True
        except BlockingIOError:
            return True  # readable, nothing new
        except BrokenPipeError:
            return True  # a record was overwritten while reading: still readable
        except OSError:
            pass
        finally:
            os.close(fd)
    return read_kernel_log(dmesg) is not None


def read_kernel_log(dmesg: str = "dmesg") -> str | None:
    """The kernel log as ``dmesg`` prints it, or None when it cannot be read (or prints nothing)."""
    exe = shutil.which(dmesg)
    if exe is None:
        return None
    try:
        done = subprocess.run([exe], capture_output=True, text=True, timeout=10, errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 and done.stdout.strip() else None
