"""Builds fi-campaign's own NVBit tool (``nvbitfi_tools/tool``) against the user's NVBit.

The project never ships or builds NVBit: the user names an unpacked NVBit release (the folder
holding ``core/libnvbit.a``) and this module compiles the tool for one GPU architecture with
CMake and nvcc into a per-user cache, ``$XDG_CACHE_HOME/fi-campaign/tool/<nvbit>-sm_XX``
(``~/.cache`` by default). The result has the layout of an NVBitFI build (``profiler/profiler.so``,
``injector/injector.so``, ``injector/injector-dummy.so``), so ``NVBITFI_HOME`` or
``nvbitfi.home`` can point at it, plus ``fi-campaign-tool.json`` saying what it was built from.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from fi_campaign.nvbitfi_tools.errors import NvbitfiError

MIN_NVBIT = (1, 7)
MARKER = "fi-campaign-tool.json"
ARCHS = ("70", "72", "75", "80", "86", "87", "89", "90")
SOURCES = ("CMakeLists.txt", "fi_tool.cu", "inject_funcs.cu", "fi_logic.h", "opcodes.h")


class BuildError(NvbitfiError):
    pass


@dataclass(frozen=True)
class BuildPlan:
    """Everything a build needs, checked before anything is compiled."""

    nvbit: Path  # the NVBit release folder (holds core/)
    nvbit_version: str
    nvcc: Path
    nvcc_version: str
    cmake: Path
    arch: str  # "90"
    out: Path


def tool_sources() -> Path:
    """The tool's sources as installed with the package (the wheel ships them)."""
    return Path(str(resources.files("fi_campaign.nvbitfi_tools").joinpath("tool")))


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fi-campaign" / "tool"


def nvbit_release(path: str | Path) -> Path:
    """The release folder, given it or its core/ folder; one sentence when it is neither."""
    p = Path(path).expanduser()
    for root in (p, p.parent):
        if (root / "core" / "nvbit.h").is_file() and (root / "core" / "libnvbit.a").is_file():
            return root.resolve()
    raise BuildError(
        f"{p} is not an NVBit release: it has no core/nvbit.h and core/libnvbit.a (unpack "
        "nvbit-Linux-x86_64-<version>.tar.bz2 from NVlabs/NVBit's releases and pass its "
        "nvbit_release folder)."
    )


def nvbit_version(release: Path) -> str:
    """NVBIT_VERSION from core/nvbit.h."""
    text = (release / "core" / "nvbit.h").read_text(encoding="utf-8", errors="replace")
    m = re.search(r'#define\s+NVBIT_VERSION\s+"([0-9][0-9.]*)"', text)
    if not m:
        raise BuildError(
            f"{release / 'core' / 'nvbit.h'} does not state its version (no NVBIT_VERSION); "
            "use an NVBit 1.7 or later release."
        )
    return m[1]


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text))


def find_nvcc(environ: Mapping[str, str] | None = None) -> Path | None:
    environ = os.environ if environ is None else environ
    found = shutil.which("nvcc", path=environ.get("PATH"))
    if found:
        return Path(found)
    for base in (environ.get("CUDA_HOME"), environ.get("CUDA_PATH")):
        if base and (Path(base) / "bin" / "nvcc").is_file():
            return Path(base) / "bin" / "nvcc"
    return None


def nvcc_version(nvcc: Path) -> str:
    try:
        out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    m = re.search(r"release [0-9.]+, V([0-9.]+)", out)
    if not m:
        raise BuildError(f"{nvcc} did not report a CUDA version ('nvcc --version'); is it a working nvcc?")
    return m[1]


def gpu_arch() -> str | None:
    """The first GPU's compute capability as an SM number ("90"), from nvidia-smi, or None."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = out.stdout.strip().splitlines()[:1] if out.returncode == 0 else []
    return first[0].strip().replace(".", "") if first else None


def normalise_arch(arch: str) -> str:
    a = arch.strip().lower().removeprefix("sm_").removeprefix("compute_").replace(".", "")
    if a not in ARCHS:
        raise BuildError(f"architecture {arch!r} is not one this tool knows (sm_{', sm_'.join(ARCHS)}).")
    return a


def plan(
    nvbit: str | Path,
    arch: str | None = None,
    nvcc: str | Path | None = None,
    out: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> BuildPlan:
    """Check nvcc, CMake and the NVBit release, pick the architecture and the output folder."""
    environ = os.environ if environ is None else environ
    compiler = Path(nvcc) if nvcc else find_nvcc(environ)
    if compiler is None or not compiler.is_file():
        raise BuildError(
            "nvcc was not found (not on PATH, nor in CUDA_HOME); install the CUDA toolkit 12 or "
            "later and put its bin folder on PATH, or pass --nvcc."
        )
    cmake = shutil.which("cmake", path=environ.get("PATH"))
    if cmake is None:
        raise BuildError(
            "cmake was not found on PATH; install CMake 3.18 or later (NVBit 1.8.1 builds tools with CMake only)."
        )
    release = nvbit_release(nvbit)
    version = nvbit_version(release)
    if version_tuple(version)[:2] < MIN_NVBIT:
        raise BuildError(
            f"NVBit {version} at {release} is older than 1.7, which this tool is written for "
            "(its injected functions keep NVBit 1.7's rules, and Ada and Hopper need 1.7); use "
            "NVBit 1.7 or later, or stock NVBitFI with this NVBit."
        )
    chosen = arch or gpu_arch()
    if not chosen:
        raise BuildError("no GPU was found to read the architecture from; pass --arch, e.g. --arch sm_90.")
    sm = normalise_arch(chosen)
    cuda = nvcc_version(compiler)
    if version_tuple(cuda)[0] >= 13 and int(sm) < 75:
        raise BuildError(
            f"nvcc {cuda} cannot compile for sm_{sm} (CUDA 13 dropped Volta); use a CUDA 12 nvcc with --nvcc."
        )
    folder = Path(out) if out else cache_root(environ) / f"{version}-sm_{sm}"
    return BuildPlan(release, version, compiler.resolve(), cuda, Path(cmake), sm, folder.expanduser().resolve())


def sources_digest(src: Path) -> str:
    h = hashlib.sha256()
    for name in SOURCES:
        h.update(name.encode() + b"\0" + (src / name).read_bytes())
    return h.hexdigest()


def _jobs() -> int:
    """The three libraries' six compiles are independent: run them side by side on the cores
    this process may use (one at a time took about 3 minutes on 2 cores)."""
    try:
        return max(1, min(6, len(os.sched_getaffinity(0))))
    except AttributeError:  # not on Linux
        return max(1, min(6, os.cpu_count() or 1))


def _generator(out: Path) -> list[str]:
    """CMake's default generator needs make; a machine with only ninja (as some GPU images
    have) builds with that, unless the folder was configured before."""
    if shutil.which("make") or not shutil.which("ninja") or (out / "CMakeCache.txt").exists():
        return []
    return ["-G", "Ninja"]


def build(p: BuildPlan, run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> Path:
    """Configure and build into ``p.out``; the compiler's own output is kept in build.log there."""
    src = tool_sources()
    p.out.mkdir(parents=True, exist_ok=True)
    log = p.out / "build.log"
    steps = [
        [
            str(p.cmake),
            "-S",
            str(src),
            "-B",
            str(p.out),
            *_generator(p.out),
            f"-DNVBIT_PATH={p.nvbit}",
            f"-DFI_ARCH={p.arch}",
            f"-DCUDA_NVCC={p.nvcc}",
        ],
        [str(p.cmake), "--build", str(p.out), "--parallel", str(_jobs())],
    ]
    with log.open("w", encoding="utf-8") as out:
        for cmd in steps:
            out.write("$ " + " ".join(cmd) + "\n")
            out.flush()
            done = run(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
            if done.returncode != 0:
                raise BuildError(
                    f"building the tool failed at '{' '.join(cmd[:2])} ...' (exit {done.returncode}); "
                    f"the compiler's messages are in {log}."
                )
    for rel in ("profiler/profiler.so", "injector/injector.so", "injector/injector-dummy.so"):
        if not (p.out / rel).is_file():
            raise BuildError(f"the build finished without {p.out / rel}; see {log}.")
    marker = {
        "tool": "fi-campaign",
        "dialect": "fi-campaign",
        **{k: str(v) for k, v in asdict(p).items()},
        "sources_sha256": sources_digest(src),
    }
    (p.out / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    return p.out


def read_marker(home: str | Path) -> dict | None:
    """What a build folder says about itself, or None when it is not one of this tool's."""
    try:
        return json.loads((Path(home) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
