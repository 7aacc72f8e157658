"""What each step of the GPU check does. One step per process:

    python -m bench.gpucheck.steps NAME --work DIR --limit SECONDS [--dry]

writes ``DIR/results/NAME.json`` ({status, figures, error | reason}) and reads and updates
``DIR/state.json``, through which steps hand on what later ones need. Steps up to ``install``
use only the standard library and what the machine has; the later ones run with fi-campaign
importable (the install's PYTHONPATH on the GPU machine, the caller's environment in a dry run).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bench.gpucheck import wheels

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
NVBIT = REPO / ".nvbit"
WHEELS = REPO / ".whl"
FI = [sys.executable, "-c", "from fi_campaign.cli import main; main()"]
DUMMY_INJECTIONS = 20
MIN_PER_STRATUM = 30
C_LAUNCHES = 6  # saxpy.cu launches three kernels twice


class Failed(Exception):
    """The step failed: one line naming what failed and what it printed; figures kept."""

    def __init__(self, line: str, figures: dict | None = None) -> None:
        super().__init__(line)
        self.figures = figures or {}


class Skipped(Exception):
    pass


@dataclass
class Ctx:
    name: str
    work: Path
    dry: bool
    limit_s: float
    state: dict
    t0: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return self.limit_s - (time.monotonic() - self.t0)

    def dir(self, *parts: str) -> Path:
        d = self.work.joinpath(self.name, *parts)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def save(self, **values) -> None:
        self.state.update(values)
        (self.work / "state.json").write_text(json.dumps(self.state, indent=2), encoding="utf-8")

    def sh(self, cmd: list[str], what: str, timeout: float | None = None, env: dict[str, str] | None = None,
           cwd: Path | None = None, ok: Callable[[int], bool] = lambda rc: rc == 0) -> subprocess.CompletedProcess:
        """Run ``cmd``, its output into the step's log; Failed (``what`` and its last line) when
        it exits otherwise than ``ok`` allows or outlasts ``timeout`` (default: the step's time left)."""
        limit = max(1.0, min(timeout or self.left(), self.left()))
        print(f"$ {' '.join(map(str, cmd))}", flush=True)
        try:
            done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=limit, env=env,
                                  cwd=cwd, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            print(out, flush=True)
            raise Failed(f"{what}: timed out after {limit:.0f} s; last output: {last_line(out)}") from None
        except OSError as e:
            raise Failed(f"{what}: could not start ({e})") from None
        print(done.stdout + done.stderr, flush=True)
        if not ok(done.returncode):
            raise Failed(f"{what}: exit code {done.returncode}: {last_line(done.stderr + done.stdout)}")
        return done


@contextmanager
def keeping(figures: dict):
    """A Failed raised inside carries ``figures`` (what the step measured before it failed)."""
    try:
        yield figures
    except Failed as e:
        e.figures = {**figures, **e.figures}
        raise


def last_line(text: str) -> str:
    lines = [x.strip() for x in (text or "").splitlines() if x.strip()]
    return lines[-1][:300] if lines else "(nothing)"


def workers() -> int:
    """Processes sharing the one GPU: the cores less two, at most 12."""
    return max(1, min(12, (os.cpu_count() or 2) - 2))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def folder_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20, 2) if path.exists() else 0.0


# ---------------------------------------------------------------------------------------------
# steps that need no fi-campaign (they run before the install on the GPU machine)

def environment(ctx: Ctx) -> dict:
    f: dict = {"python": {"version": platform.python_version(), "executable": sys.executable, "prefix": sys.prefix},
               "cores": os.cpu_count(), "glibc": platform.libc_ver()[1], "kernel": platform.release()}
    try:
        f["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    smi = shutil.which("nvidia-smi")
    if smi:
        q = subprocess.run([smi, "--query-gpu=name,driver_version,compute_cap,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=30)
        f["gpus"] = [dict(zip(("name", "driver", "compute_cap", "memory"), (x.strip() for x in row.split(","))))
                     for row in q.stdout.strip().splitlines() if row.strip()]
    nvcc = shutil.which("nvcc") or next((str(p) for p in (Path(os.environ.get("CUDA_HOME", "/nonexistent")) / "bin/nvcc",
                                                           Path("/usr/local/cuda/bin/nvcc")) if p.is_file()), None)
    for key, exe, args in (("nvcc", nvcc, ["--version"]), ("cmake", shutil.which("cmake"), ["--version"]),
                           ("gxx", shutil.which("g++"), ["--version"]), ("pip", sys.executable, ["-m", "pip", "--version"])):
        if exe:
            out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=60).stdout
            f[key] = next((x for x in out.splitlines() if "release" in x), None) if key == "nvcc" else last_line(
                out.splitlines()[0] if out.strip() else "")
        else:
            f[key] = None
    include, _ = python_build_paths()
    f["python_headers"] = str(include / "Python.h") if (include / "Python.h").is_file() else None
    # NVBit disassembles every function it instruments with nvdisasm (NVDISASM, else the one on PATH)
    beside = Path(nvcc).resolve().parent / "nvdisasm" if nvcc else None
    f["nvdisasm"] = shutil.which("nvdisasm") or (str(beside) if beside and beside.is_file() else None)
    off_path = [str(Path(x).parent) for x, name in ((nvcc, "nvcc"), (f["nvdisasm"], "nvdisasm"))
                if x and not shutil.which(name)]
    if off_path:  # CUDA's tools outside PATH: the later steps get their folder on it
        ctx.save(tool_path=sorted(set(off_path)))
    try:
        import torch

        f["torch"] = {"version": torch.__version__, "cuda": torch.version.cuda, "file": torch.__file__,
                      "cuda_available": torch.cuda.is_available()}
        if torch.cuda.is_available():
            f["torch"]["device"] = torch.cuda.get_device_name(0)
            f["torch"]["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    except Exception as e:  # noqa: BLE001 - a broken torch is itself the finding
        f["torch"] = {"error": f"{type(e).__name__}: {e}"}
    f["nvbit"] = nvbit_release()
    carried = wheels.carried(WHEELS) if WHEELS.is_dir() else []
    f["wheels"] = {"files": [w.path.name for w in carried], "mb": folder_mb(WHEELS),
                   "missing": wheels.missing_from(WHEELS) if WHEELS.is_dir() else sorted(wheels.listed())}
    f["travels_mb"] = {".whl": folder_mb(WHEELS), ".nvbit": folder_mb(NVBIT)}
    sm = (f.get("gpus") or [{}])[0].get("compute_cap", "9.0").replace(".", "")
    ctx.save(sm=sm, torch_before=(f["torch"] or {}).get("version"), torch_file=(f["torch"] or {}).get("file"))
    if not ctx.dry and not f.get("gpus"):
        raise Failed("no GPU: nvidia-smi found none (or is missing)", f)
    if not ctx.dry and not f["nvdisasm"]:
        raise Failed("no nvdisasm on PATH or beside nvcc: NVBit needs it to read the kernels it instruments", f)
    return f


def nvbit_release() -> dict:
    header = NVBIT / "core" / "nvbit.h"
    if not header.is_file():
        return {"present": False, "how": "make gpu-nvbit (docs/NVBITFI.md, 'Verified and not yet')"}
    m = re.search(r'#define\s+NVBIT_VERSION\s+"([^"]+)"', header.read_text(errors="replace"))
    lib = NVBIT / "core" / "libnvbit.a"
    source = NVBIT / "SOURCE"
    return {"present": True, "version": m[1] if m else None, "libnvbit_sha256": sha256(lib) if lib.is_file() else None,
            "source": source.read_text().strip() if source.is_file() else None,
            "prebuilt": sorted(p.name for p in NVBIT.glob("prebuilt-*"))}


def install(ctx: Ctx) -> dict:
    """GPU machine: pip resolves fi-campaign[bench] against the machine's own packages and the
    carried wheels, and what it would install goes into a scratch --target folder put on
    PYTHONPATH. Dry run: the same resolution for Python 3.12 against stand-ins for the image,
    and a real --target install of what installs on this Python."""
    if not WHEELS.is_dir() or not any(WHEELS.glob("*.whl")):
        if ctx.dry:
            raise Skipped("no .whl folder here: make gpu-wheels downloads the wheels that travel")
        raise Failed(".whl is missing: run make gpu-wheels on the CPU machine and name .whl in carry")
    f: dict = {"carried": [w.path.name for w in wheels.carried(WHEELS)]}
    missing = wheels.missing_from(WHEELS)
    if missing:
        f["missing_from_whl"] = missing
    pip = [sys.executable, "-m", "pip"]
    wheel_dir, site = ctx.dir("wheel"), ctx.work / "site"
    if not ctx.dry:  # should this step fail, the later ones still find fi-campaign in the working tree
        ctx.save(pythonpath=[str(site), str(REPO / "src")], path=[str(site / "bin")])
    t = time.monotonic()
    try:
        ctx.sh([*pip, "wheel", "-q", "--no-index", "--find-links", WHEELS, "--no-deps", "-w", wheel_dir, REPO],
               "building fi-campaign's wheel offline (setuptools from .whl)", timeout=120)
    except Failed as e:
        if not ctx.dry:  # the carried requirements at least, beside the working tree's fi-campaign
            runtime = [w.path for w in wheels.carried(WHEELS) if w.name not in wheels.BUILD_ONLY]
            subprocess.run([*pip, "install", "-q", "--no-index", "--no-deps", "--no-compile", "--target", str(site),
                            *map(str, runtime)], check=False)
            raise Failed(f"{e}; later steps use fi-campaign from the working tree (src/) and the carried wheels", f) \
                from None
        raise
    f["wheel_build_s"] = round(time.monotonic() - t, 1)
    ours = next(wheel_dir.glob("fi_campaign-*.whl"))
    f["wheel"] = {"file": ours.name, "mb": round(ours.stat().st_size / 2**20, 1)}
    report = ctx.dir() / "resolve.json"
    resolve = [*pip, "install", "--dry-run", "-q", "--no-index", "--find-links", WHEELS, "--find-links", wheel_dir,
               "--report", report]
    if ctx.dry:
        stand_ins = ctx.dir("image-stand-ins")
        origin = wheels.write_stand_ins(stand_ins)
        resolve += ["--ignore-installed", "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                    "--abi", "cp312", *[x for p in wheels.PLATFORMS for x in ("--platform", p)],
                    "--find-links", stand_ins]
    t = time.monotonic()
    try:
        ctx.sh([*resolve, "fi-campaign[bench]"], "resolving fi-campaign[bench] from .whl and "
               + ("stand-ins for the GPU image (Python 3.12)" if ctx.dry else "this machine's packages"), timeout=120)
    except Failed as e:
        if not ctx.dry:  # every carried requirement and fi-campaign anyway, so that the later steps can try
            runtime = [ours, *(w.path for w in wheels.carried(WHEELS) if w.name not in wheels.BUILD_ONLY)]
            subprocess.run([*pip, "install", "-q", "--no-index", "--no-deps", "--no-compile", "--target", str(site),
                            *map(str, runtime)], check=False)
            raise Failed(f"{e}; every carried wheel was installed anyway, without pip's resolution", f) from None
        raise
    f["resolve_s"] = round(time.monotonic() - t, 1)
    plan = wheels.resolution(report)
    carried = {w.name: w for w in wheels.carried(WHEELS)}
    if ctx.dry:
        image = {n: v for n, v in plan.items() if v["file"].endswith("-py3-none-any.whl") and n not in carried
                 and n != "fi-campaign" and (stand_ins / v["file"]).exists()}
        f["from_image"] = {n: f"{v['version']} ({origin.get(n, '?')})" for n, v in sorted(image.items())}
        plan = {n: v for n, v in plan.items() if n not in image}
    replaced = sorted(set(plan) & wheels.PROTECTED)
    if replaced:
        raise Failed(f"installing fi-campaign would replace the machine's {', '.join(replaced)}", f)
    unexpected = sorted(n for n in plan if n not in carried and n != "fi-campaign")
    if unexpected:
        raise Failed(f"pip would install {', '.join(unexpected)}, which no carried wheel holds", f)
    f["installs"] = {n: v["version"] for n, v in sorted(plan.items())}
    files = [ours] + [carried[n].path for n in plan if n in carried]
    if ctx.dry:
        f["not_installable_here"] = sorted(p.name for p in files if not wheels.Wheel.of(p).pure)
        files = [p for p in files if wheels.Wheel.of(p).pure]
    shutil.rmtree(site, ignore_errors=True)
    t = time.monotonic()
    ctx.sh([*pip, "install", "-q", "--no-index", "--no-deps", "--no-compile", "--target", site, *files],
           "installing into the scratch site", timeout=120)
    f["install_s"] = round(time.monotonic() - t, 1)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), *([os.environ["PYTHONPATH"]]
                                                                     if os.environ.get("PYTHONPATH") else [])]))
    probe = ctx.sh([sys.executable, "-c", PROBE], "importing fi-campaign from the scratch site", env=env, timeout=120)
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    f["after"] = seen
    if not seen["fi_campaign"].startswith(str(site)):
        raise Failed(f"fi_campaign was imported from {seen['fi_campaign']}, not from the scratch site", f)
    if ctx.state.get("torch_before") and seen["torch"] != ctx.state["torch_before"]:
        raise Failed(f"torch changed: {ctx.state['torch_before']} before, {seen['torch']} after", f)
    if seen["torch_file"].startswith(str(site)):
        raise Failed("torch would be imported from the scratch site, not the machine's own", f)
    if seen["unmet"] and not ctx.dry:
        raise Failed(f"unmet requirements: {'; '.join(seen['unmet'])}", f)
    if seen["missing_data"]:
        raise Failed(f"the installed package lacks {', '.join(seen['missing_data'])}", f)
    if not ctx.dry:
        ctx.save(pythonpath=[str(site)], path=[str(site / "bin")])
    return f


PROBE = """
import json, sys
from pathlib import Path
import torch, fi_campaign, alembic, sqlalchemy
from fi_campaign.models import zoo
from fi_campaign.nvbitfi_tools import build
sys.path.insert(0, str(Path.cwd()))
from bench.gpucheck.wheels import unmet
pkg = Path(fi_campaign.__file__).parent
need = [pkg / "templates" / "injection-info" / "fi-campaign.txt.j2", pkg / "store" / "migrations" / "env.py",
        build.tool_sources() / "CMakeLists.txt", build.tool_sources() / "tests" / "host_test.cpp",
        pkg / "models" / "samples" / "cifar10-test-sample.npz"]
zoo.read("zoo:resnet20-cifar10-hardened")
print(json.dumps({"fi_campaign": fi_campaign.__file__, "torch": torch.__version__, "torch_file": torch.__file__,
                  "alembic": alembic.__file__, "sqlalchemy": sqlalchemy.__version__, "unmet": unmet(),
                  "missing_data": [str(p.relative_to(pkg)) for p in need if not p.exists()]}))
"""


# ---------------------------------------------------------------------------------------------
# steps with fi-campaign importable

def tool_host(ctx: Ctx) -> dict:
    from fi_campaign.models import sampler
    from fi_campaign.nvbitfi_tools import build, sites

    src = build.tool_sources()
    exe = ctx.dir() / "host_test"
    t = time.monotonic()
    if shutil.which("g++") is None:
        raise Failed("g++ is not installed, so the tool's host logic cannot be built")
    ctx.sh(["g++", "-std=c++17", "-O2", "-ffp-contract=off", src / "tests" / "host_test.cpp", "-o", exe],
           "g++ of the tool's host test", timeout=120)
    f: dict = {"host_build_s": round(time.monotonic() - t, 1)}
    ctx.save(host_test=str(exe))
    queries = [("masks", "0.3262"), ("value", "99", "2.0", "1.4543958", *["0x3f8ccccd"] * 32)]
    done = subprocess.run([str(exe)], input="\n".join(" ".join(q) for q in queries) + "\n", capture_output=True,
                          text=True, timeout=30)
    answers = done.stdout.splitlines()
    import numpy as np

    bit = sites.bit_position(0.3262)
    want_value = " ".join(f"{b:08x}" for b in sampler.warp_values(np.full(32, np.float32(1.1)), 99, 2.0, 1.4543958)
                          .view(np.uint32))
    f["host_agrees"] = len(answers) == 2 and answers[0].split()[0] == str(bit) and answers[1] == want_value
    if not f["host_agrees"]:
        raise Failed(f"the host build disagrees with the Python side: {answers[:2]}", f)
    nvcc = build.find_nvcc()
    if nvcc is None:
        f["cubin"] = "skipped: no nvcc"
        return f
    sm = ctx.state.get("sm", "90")
    t = time.monotonic()
    ctx.sh([nvcc, f"-arch=sm_{sm}", "-rdc=true", "-maxrregcount=24", "--cubin", src / "inject_funcs.cu", "-o",
            ctx.dir() / "inject.cubin"], f"nvcc of the injected functions for sm_{sm}", timeout=120)
    f["cubin_s"] = round(time.monotonic() - t, 1)
    f["sm"] = sm
    return f


def tool_build(ctx: Ctx) -> dict:
    """The three libraries built here; when that fails, later steps may use the build made on
    the CPU machine by make gpu-nvbit (.nvbit/prebuilt-sm_90), and the step says so."""
    from fi_campaign.nvbitfi_tools import build

    if not (NVBIT / "core" / "libnvbit.a").is_file():
        raise Failed("no NVBit release in .nvbit: run make gpu-nvbit on the CPU machine and name .nvbit in carry")
    sm = ctx.state.get("sm", "90")
    out = ctx.work / "tool"
    shutil.rmtree(out, ignore_errors=True)
    t = time.monotonic()
    try:
        ctx.sh([*FI, "injector", "build", "--nvbit", NVBIT, "--arch", f"sm_{sm}", "--out", out],
               f"fi-campaign injector build --arch sm_{sm}", timeout=ctx.left() - 5)
    except Failed as e:
        prebuilt = NVBIT / f"prebuilt-sm_{sm}"
        log = out / "build.log"
        detail = last_line(log.read_text(errors="replace")) if log.exists() else ""
        if (prebuilt / "injector" / "injector-dummy.so").is_file():
            ctx.save(tool_home=str(prebuilt), tool_from="prebuilt on the CPU machine")
            raise Failed(f"{e} {detail}; later steps use the build made on the CPU machine ({prebuilt})") from None
        raise Failed(f"{e} {detail}") from None
    f: dict = {"build_s": round(time.monotonic() - t, 1), "marker": build.read_marker(out)}
    symbols = {}
    for rel in ("profiler/profiler.so", "injector/injector.so", "injector/injector-dummy.so"):
        nm = subprocess.run(["nm", "-D", "--defined-only", str(out / rel)], capture_output=True, text=True).stdout
        symbols[rel] = all(re.search(rf"\bT {fn}$", nm, flags=re.M) for fn in
                           ("nvbit_at_init", "nvbit_at_cuda_event", "nvbit_tool_init", "nvbit_at_term"))
        f.setdefault("mb", {})[rel] = round((out / rel).stat().st_size / 2**20, 1)
    f["exports_nvbit_callbacks"] = symbols
    if not all(symbols.values()):
        raise Failed(f"a library lacks NVBit's callbacks: {symbols}", f)
    ctx.save(tool_home=str(out), tool_from="built here")
    return f


def programs(ctx: Ctx) -> dict:
    """The plain CUDA C++ program (nvcc) and the embedding host (gcc, this Python's headers).
    A dry run builds what this machine can (it has no libcuda: compile and link only) and
    notes what it cannot; on the GPU machine a part that cannot be built fails the step."""
    from fi_campaign.nvbitfi_tools import build

    f: dict = {}
    errors, absent = [], []
    sm = ctx.state.get("sm", "90")
    nvcc = build.find_nvcc()
    out = ctx.dir()
    if nvcc is None:
        absent.append("saxpy: no nvcc")
    else:
        try:
            t = time.monotonic()
            ctx.sh([nvcc, f"-arch=sm_{sm}", "-O2", HERE / "saxpy.cu", "-o", out / "saxpy"], "nvcc saxpy.cu", timeout=120)
            f["saxpy_build_s"] = round(time.monotonic() - t, 1)
            ctx.save(saxpy=str(out / "saxpy"))
        except Failed as e:
            errors.append(str(e))
    include, libdir = python_build_paths()
    f["python_headers"] = (include / "Python.h").is_file()
    if not f["python_headers"]:
        absent.append(f"pyhost: no Python.h at {include} (this Python's development headers are not installed)")
    elif shutil.which("gcc") is None:
        absent.append("pyhost: no gcc")
    else:
        version = sysconfig.get_config_var("VERSION") + (sysconfig.get_config_var("ABIFLAGS") or "")
        flags = [f"-I{include}", f"-L{libdir}", f"-lpython{version}",
                 *(sysconfig.get_config_var("LIBS") or "").split(), *(sysconfig.get_config_var("SYSLIBS") or "").split(),
                 "-ldl", f"-Wl,-rpath,{libdir}", "-rdynamic"]
        try:
            ctx.sh(["gcc", "-O2", "-Wall", HERE / "pyhost.c", *flags, "-o", out / "pyhost"], "gcc pyhost.c", timeout=60)
            env = dict(os.environ, FI_PYHOST_NO_CUDA="1", FI_PYHOST_PYTHON=sys.executable)
            probe = ctx.sh([out / "pyhost", "-c", "import sys, torch, fi_campaign; print(sys.prefix, torch.__version__)"],
                           "pyhost embedding this Python (CUDA part skipped)", env=env, timeout=60)
            f["pyhost_embeds"] = last_line(probe.stdout)
            ctx.save(pyhost=str(out / "pyhost"))
        except Failed as e:
            errors.append(str(e))
    if absent:
        f["not_built"] = absent
    if errors or (absent and not ctx.dry):
        raise Failed("; ".join(errors + ([] if ctx.dry else absent)), f)
    if absent and len(absent) == 2:
        raise Skipped("; ".join(absent))
    return f


def python_build_paths() -> tuple[Path, str]:
    """This Python's headers and library folder; a relocated build (such as a standalone one
    unpacked elsewhere) may still name its build-time paths, so its own prefix is tried too."""
    tag = sysconfig.get_config_var("VERSION") + (sysconfig.get_config_var("ABIFLAGS") or "")
    include = Path(sysconfig.get_config_var("INCLUDEPY") or "")
    if not (include / "Python.h").is_file():
        include = Path(sys.base_prefix) / "include" / f"python{tag}"
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    if not Path(libdir).is_dir():
        libdir = str(Path(sys.base_prefix) / "lib")
    return include, libdir


def configs(ctx: Ctx) -> dict:
    """The configs of the GPU steps; in a dry run each is planned as its step plans it, the
    SASS ones from a profile in the tool's format written by the tool's host build."""
    import yaml

    from fi_campaign import config as cfg

    home = ctx.state.get("tool_home", str(ctx.work / "tool"))
    out = ctx.dir()
    written = {}
    for name, raw in campaign_configs(home, "cpu" if ctx.dry else "cuda").items():  # nvbitfi ones: always cuda
        path = out / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        cfg.parse(yaml.safe_load(path.read_text()), str(path))
        written[name] = str(path)
    ctx.save(configs=written)
    f: dict = {"configs": sorted(written)}
    if not ctx.dry:
        return f
    host = ctx.state.get("host_test") or str(ctx.work / "tool_host" / "host_test")
    if not Path(host).is_file():
        raise Failed("no host test binary to write a stand-in profile with (the tool_host step failed)", f)
    profile = out / "stand-in-profile.txt"
    lines = []
    p = subprocess.Popen([host], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    for i, fp32 in enumerate([40, 0, 300, 25]):
        p.stdin.write(f"profile {i} voidk{i}<float>(float*,int) 4 FFMA fp32 {fp32} LDG ld 7 ISETP pr 5 "
                      f"EXIT nodest 3 IMAD others 11\n")
        p.stdin.flush()
        lines.append(p.stdout.readline())
    p.stdin.close()
    p.wait(timeout=10)
    profile.write_text("".join(lines))
    for name in ("dummy", "sass", "framework"):
        db = out / f"{name}.db"
        for leftover in out.glob(f"{name}.db*"):
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        args = [*FI, "--db", db, "plan", written[name]]
        if name != "framework":
            args += ["--profile", str(profile)]
        if name != "dummy":
            args += ["--injections", str(MIN_PER_STRATUM)]
        ctx.sh(args, f"fi-campaign plan {name}.yaml", timeout=120)
        f[f"{name}_planned"] = planned(db)
    return f


def campaign_configs(home: str, framework_device: str) -> dict[str, dict]:
    """The DUMMY campaign, the SASS campaign and its framework-level twin (on ``framework_device``).
    Images and batch are small (16): every SASS run is one instrumented process."""
    common = {"seed": 2022, "images": {"source": "bundled", "count": 16, "seed": 0}, "batch_size": 16,
              "golden_runs": 2, "math": "fp32"}
    nv = {"home": home, "dialect": "fi-campaign", "group": "fp32"}
    pair = {"baseline": "zoo:resnet20-cifar10-baseline", "hardened": "zoo:resnet20-cifar10-hardened"}
    return {
        "dummy": {"name": "gpu-check-dummy", "backend": "nvbitfi", "device": "cuda", **common,
                  "models": {"baseline": pair["baseline"]}, "modes": ["single_bit"], "injections": DUMMY_INJECTIONS,
                  "nvbitfi": {**nv, "dummy": True}},
        "sass": {"name": "gpu-check-sass", "backend": "nvbitfi", "device": "cuda", **common, "models": pair,
                 "modes": ["single_bit", "warp_random"], "injections": MIN_PER_STRATUM,
                 "fault_model": {"table": "dsn2021-fu", "op": "FFMA", "size": "common"}, "nvbitfi": nv},
        "framework": {"name": "gpu-check-framework", "backend": "pytorch", "device": framework_device, **common,
                      "models": pair,
                      "modes": ["single_bit", "warp_random"], "injections": MIN_PER_STRATUM,
                      "fault_model": {"table": "dsn2021-fu", "op": "FFMA", "size": "common"}},
    }


def planned(db: Path) -> dict[str, int]:
    from fi_campaign.store import Store

    return {f"{m} {mode}": n for m, mode, _, n in Store.open(db).progress()}


# ---------------------------------------------------------------------------------------------
# GPU steps

def tool(ctx: Ctx):
    from bench.gpucheck.toolrun import Tool

    home = ctx.state.get("tool_home")
    if not home or not (Path(home) / "injector" / "injector-dummy.so").is_file():
        raise Failed("no tool build to use (the tool_build step failed and no prebuilt build travelled)")
    return Tool(Path(home))


def doctor(ctx: Ctx) -> dict:
    t = tool(ctx)
    done = ctx.sh([*FI, "doctor", "--home", t.home, "--no-dry-run"], "fi-campaign doctor", timeout=60,
                  ok=lambda rc: rc in (0, 2))
    lines = [x.rstrip() for x in done.stdout.splitlines() if x.strip()]
    f = {"lines": lines, "exit": done.returncode}
    if done.returncode != 0:
        raise Failed(f"fi-campaign doctor: {next((x.strip() for x in lines if 'MISS' in x), last_line(done.stderr))}", f)
    return f


def c_program(ctx: Ctx) -> dict:
    """The tool on saxpy (a C executable): a profile, 20 DUMMY injections that must leave the
    output bit-identical, and real faults whose per-lane records must be what the Python side
    computes from the same seeds."""
    import numpy as np

    from bench.gpucheck.toolrun import inject, profile_of, run_under, side_by_side
    from fi_campaign.models import powerlaw, sampler
    from fi_campaign.nvbitfi_tools import sites
    from fi_campaign.nvbitfi_tools.injlog import LogState
    from fi_campaign.nvbitfi_tools.profile import ProfileError

    t = tool(ctx)
    exe = ctx.state.get("saxpy")
    if not exe:
        raise Failed("no saxpy binary (the programs step failed)")
    cmd = [exe, "out.bin"]
    base = ctx.dir()
    f: dict = {}
    native = run_under(None, cmd, base / "native", 30)
    if native.ended is None or native.ended.due_reason():
        raise Failed(f"saxpy without the tool: {native.ended.due_reason() if native.ended else 'stopped'}: "
                     f"{last_line(native.ended.stderr_tail if native.ended else '')}")
    golden = (base / "native" / "out.bin").read_bytes()
    f["native_s"] = round(native.ended.runtime_s, 2)
    prof = run_under(t.profiler, cmd, base / "profile", 60)
    f["profile_s"] = round(prof.ended.runtime_s, 2) if prof.ended else None
    try:
        profile = profile_of(prof)
    except ProfileError as e:
        raise Failed(f"profiling saxpy: {e}", f) from None
    f["profile"] = {"launches": len(profile.launches), "expected_launches": C_LAUNCHES,
                    "kernels": profile.kernels(), "fp32": profile.total("fp32"),
                    "unknown_opcodes": sum(x.opcodes.get("UNKNOWN", 0) for x in profile.launches),
                    "groups": {g: sum(x.groups[g] for x in profile.launches) for g in profile.launches[0].groups}}
    if (base / "profile" / "out.bin").read_bytes() != golden:
        raise Failed("saxpy's output under the profiler differs from its native output", f)
    rng = np.random.default_rng(1)
    drawn = sites.draw_sites(profile, "fp32", DUMMY_INJECTIONS, rng)

    def dummy(i: int):
        run, log = inject(t.dummy, cmd, base / "dummy" / str(i), "single_bit", drawn[i], 60)
        same = (run.d / "out.bin").exists() and (run.d / "out.bin").read_bytes() == golden
        counts_equal = log.counts == profile.launches[drawn[i].kcount].groups
        return {"state": log.state.value, "same_output": same, "dummy": log.dummy, "value_changed": log.value_changed,
                "counts_equal_profile": counts_equal, "s": run.ended.runtime_s if run.ended else None,
                "reason": log.reason}

    rows = side_by_side(dummy, range(len(drawn)), workers())
    masked = sum(r["state"] == LogState.INJECTED.value and r["same_output"] and r["value_changed"] is False
                 for r in rows)
    f["dummy"] = {"injections": len(rows), "masked": masked, "counts_equal_profile": sum(r["counts_equal_profile"]
                                                                                         for r in rows),
                  "mean_run_s": round(float(np.mean([r["s"] for r in rows if r["s"]] or [0])), 3),
                  "not_masked": [r for r in rows if not (r["state"] == "injected" and r["same_output"])][:3]}
    law = powerlaw.entry("dsn2021-fu", "FFMA", "common")
    real = [("single_bit", s) for s in drawn[:4]] + [("warp_random", s) for s in drawn[4:8]] + \
        [("warp_xor", s) for s in drawn[8:10]]
    seeds = rng.integers(0, 2**62, len(real))

    def fault(i: int):
        mode, site = real[i]
        run, log = inject(t.injector, cmd, base / "real" / str(i), mode, site, 60, value_seed=int(seeds[i]),
                          law=(law.x_min, law.alpha) if mode == "warp_random" else None)
        right = log.state is LogState.INJECTED and bool(log.lanes)
        for lane in log.lanes:
            if mode == "single_bit":
                right &= lane.before ^ lane.after == 1 << sites.bit_position(site.bit_id_seed)
            elif mode == "warp_xor":
                right &= lane.before ^ lane.after == sites.random_mask(site.bit_id_seed)
            else:
                x = np.full(32, np.uint32(lane.before).view(np.float32))
                want = sampler.warp_values(x, int(seeds[i]), law.x_min, law.alpha).view(np.uint32)[lane.lane]
                right &= int(want) == lane.after
        changed = (run.d / "out.bin").exists() and (run.d / "out.bin").read_bytes() != golden
        return {"mode": mode, "state": log.state.value, "lanes": len(log.lanes), "records_right": right,
                "output_changed": changed, "opcode": log.opcode, "reason": log.reason}

    rows = side_by_side(fault, range(len(real)), workers())
    f["real"] = {"injections": len(rows), "injected": sum(r["state"] == "injected" for r in rows),
                 "records_right": sum(r["records_right"] for r in rows),
                 "output_changed": sum(r["output_changed"] for r in rows), "runs": rows}
    if f["profile"]["launches"] != C_LAUNCHES:
        raise Failed(f"the profile of saxpy has {f['profile']['launches']} launches, not {C_LAUNCHES}", f)
    if masked != len(drawn):
        raise Failed(f"saxpy DUMMY campaign: {masked}/{len(drawn)} masked (expected all)", f)
    if f["real"]["records_right"] != f["real"]["injected"] or f["real"]["injected"] == 0:
        raise Failed(f"saxpy real faults: {f['real']['records_right']} of {f['real']['injected']} injected runs have "
                     "the per-lane records the Python side computes", f)
    return f


def dummy_campaign(ctx: Ctx, env: dict[str, str]) -> dict:
    """plan + run of the DUMMY config (20 injections, all must be masked) in this step's folder."""
    from fi_campaign.nvbitfi_tools.injlog import LOG_FILE
    from fi_campaign.store import Store, runs_dir

    db = ctx.dir() / "dummy.db"
    f: dict = {}
    t = time.monotonic()
    try:
        ctx.sh([*FI, "--db", db, "plan", ctx.state["configs"]["dummy"]], "fi-campaign plan (profiling under the tool)",
               env=env, timeout=max(30, ctx.left() * 0.6))
    except Failed as e:
        prof = runs_dir(db) / "baseline" / "profile"
        kept = runs_dir(db) / "baseline" / "nvbitfi-igprofile.txt"  # where plan moves the profiler's log
        log = prof / LOG_FILE if (prof / LOG_FILE).exists() else kept
        size = log.stat().st_size if log.exists() else None
        f["profile_log_bytes"] = size
        f["profile_stderr"] = last_line((prof / "stderr.txt").read_text(errors="replace")) if (prof / "stderr.txt").exists() else None
        if size == 0:
            ctx.save(python_instrumented=False)
            raise Failed(f"{e}; the tool loaded (its log was opened) but no kernel-launch callback arrived "
                         "inside the workload process", f) from None
        if size is None:
            ctx.save(python_instrumented=False)
            raise Failed(f"{e}; the tool never loaded into the workload process (no log)", f) from None
        raise
    f["plan_s"] = round(time.monotonic() - t, 1)
    store = Store.open(db)
    profile_path = Path(store.campaign().models["baseline"]["profile"]["path"])
    from fi_campaign.nvbitfi_tools.profile import read_profile

    profile = read_profile(profile_path, "fi-campaign")
    f["profile"] = {"launches": len(profile.launches), "kernels": len(profile.kernels()), "fp32": profile.total("fp32"),
                    "unknown_opcodes": sum(x.opcodes.get("UNKNOWN", 0) for x in profile.launches)}
    # a profile came out, so the tool sees this workload's launches: the later steps can use it
    ctx.save(python_instrumented=True, dummy_db=str(db), profile=str(profile_path),
             workload_root=str(runs_dir(db) / "baseline"), profile_s=f["plan_s"], launcher_env=env_delta(env))
    t = time.monotonic()
    with keeping(f):
        ctx.sh([*FI, "--db", db, "run", "--per-gpu", str(workers()), "--keep-runs"], "fi-campaign run (DUMMY injector)",
               env=env, timeout=ctx.left() - 5)
    f["run_s"] = round(time.monotonic() - t, 1)
    rows = list(store.export_rows())
    outcomes: dict[str, int] = {}
    for r in rows:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    timing = json.loads((runs_dir(db) / "baseline" / "timing.json").read_text())
    f.update(outcomes=outcomes, results=len(rows), instrumented_run_s=round(timing["runtime_s"], 2),
             mean_injection_s=round(sum(r["runtime_s"] or 0 for r in rows) / max(1, len(rows)), 2),
             injection_states=sorted({i.state for i in store.injections().values()}),
             count_checks=[c.__dict__ for c in store.count_checks()])
    ctx.save(inject_run_s=f["mean_injection_s"] or timing["runtime_s"])
    if outcomes.get("masked", 0) != DUMMY_INJECTIONS:
        raise Failed(f"DUMMY campaign: {outcomes.get('masked', 0)}/{DUMMY_INJECTIONS} masked (expected all): {outcomes}", f)
    return f


def env_delta(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k in ("FI_WORKLOAD_PYTHON", "FI_PYHOST_PYTHON")}


def torch_dummy(ctx: Ctx) -> dict:
    tool(ctx)
    return dummy_campaign(ctx, dict(os.environ))


def workaround(ctx: Ctx) -> dict:
    if ctx.state.get("python_instrumented") is not False:
        raise Skipped("not needed: the tool instrumented the python3 workload"
                      if ctx.state.get("python_instrumented") else "the PyTorch DUMMY campaign did not get as far")
    host = ctx.state.get("pyhost")
    if not host:
        raise Failed("the C host (pyhost) was not built (see the programs step), so the workaround cannot run")
    env = dict(os.environ, FI_WORKLOAD_PYTHON=host, FI_PYHOST_PYTHON=sys.executable)
    f = dummy_campaign(ctx, env)
    f["launcher"] = host
    return f


def counts(ctx: Ctx) -> dict:
    """One DUMMY run per launch of the ResNet-20 profile, each at the launch's first fp32
    instruction: the injector's counts of all ten groups over that launch must equal the profile's."""
    from bench.gpucheck.toolrun import inject, side_by_side
    from fi_campaign.nvbitfi_tools.profile import read_profile
    from fi_campaign.nvbitfi_tools.sites import Site
    from fi_campaign.store import Store
    from fi_campaign.workload.program import command

    t = tool(ctx)
    if not ctx.state.get("profile"):
        raise Failed("no ResNet-20 profile (the DUMMY campaign steps failed)")
    profile = read_profile(ctx.state["profile"], "fi-campaign")
    env = dict(os.environ, **ctx.state.get("launcher_env", {}))
    cmd = command(Path(ctx.state["workload_root"]))
    cmd[0] = env.get("FI_WORKLOAD_PYTHON", cmd[0])
    per_run = float(ctx.state.get("inject_run_s") or 10.0)
    w = workers()
    fits = int(max(1, (ctx.left() - 10) / (per_run * 1.5)) * w)
    chosen = profile.launches[:fits]
    base = ctx.dir()

    def check(launch):
        site = Site(launch.kernel, launch.index, 1, 0, 0.5, 0.5)
        run, log = inject(t.dummy, cmd, base / str(launch.index), "single_bit", site, max(30.0, per_run * 5), env=env)
        differ = {g: (n, log.counts.get(g)) for g, n in launch.groups.items() if log.counts.get(g) != n}
        return {"launch": launch.index, "kernel": launch.kernel[:120], "state": log.state.value,
                "matches": log.index == launch.index and log.kernel_name == launch.kernel, "differ": differ}

    rows = side_by_side(check, chosen, w)
    equal = [r for r in rows if r["matches"] and not r["differ"]]
    f = {"launches": len(profile.launches), "checked": len(rows), "equal": len(equal),
         "complete": len(rows) == len(profile.launches),
         "differ": [r for r in rows if r not in equal][:8],
         "store_count_checks": [c.__dict__ for c in Store.open(ctx.state["dummy_db"]).count_checks()]}
    if len(equal) != len(rows):
        first = f["differ"][0]
        raise Failed(f"{len(rows) - len(equal)} of {len(rows)} launches differ; first: launch {first['launch']} "
                     f"({first['kernel'][:60]}): {first['differ'] or 'another kernel ran there'}", f)
    return f


def stratum_figures(db: Path) -> dict:
    from fi_campaign.classify import COUNTED, CRITICAL_SDC
    from fi_campaign.stats import proportion
    from fi_campaign.store import Store

    store = Store.open(db)
    out = {}
    counts = store.outcome_counts()
    for model, mode, done, planned_n in store.progress():
        c = counts.get((model, mode), {})
        n = sum(c.get(k, 0) for k in COUNTED)
        r = proportion(c.get(CRITICAL_SDC, 0), n) if n else None
        out[f"{model} {mode}"] = {"planned": planned_n, "done": done, "outcomes": c,
                                  "critical_sdc": None if r is None else [round(r.rate, 4), round(r.low, 4), round(r.high, 4)]}
    return out


def run_until(ctx: Ctx, cmd: list, what: str, deadline_s: float, env: dict[str, str] | None = None,
              name: str = "run") -> tuple[float, bool]:
    """``cmd`` until it ends or ``deadline_s`` passes; then SIGINT (a run stops between
    results, keeping them), SIGKILL 20 s later. Returns (seconds, stopped early)."""
    print(f"$ {' '.join(map(str, cmd))}", flush=True)
    out = ctx.dir() / f"{name}.log"
    t = time.monotonic()
    with out.open("w") as sink:
        p = subprocess.Popen([str(c) for c in cmd], env=env, stdin=subprocess.DEVNULL, stdout=sink,
                             stderr=subprocess.STDOUT)
        try:
            p.wait(timeout=max(1.0, deadline_s))
            stopped = False
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            stopped = True
    text = out.read_text(errors="replace")
    print(text[-20000:], flush=True)
    if p.returncode not in (0, None) and not stopped:
        raise Failed(f"{what}: exit code {p.returncode}: {last_line(text)}")
    return time.monotonic() - t, stopped


def sass_campaign(ctx: Ctx) -> dict:
    tool(ctx)
    if not ctx.state.get("profile"):
        raise Failed("no ResNet-20 baseline profile (the DUMMY campaign steps failed)")
    env = dict(os.environ, **ctx.state.get("launcher_env", {}))
    per_run = float(ctx.state.get("inject_run_s") or 10.0)
    w = workers()
    overhead = float(ctx.state.get("profile_s") or 60.0) + 6 * per_run + 20  # hardened's profile, golden and timing runs
    n = int((ctx.left() - overhead) * w / (4 * per_run * 1.25))
    n = max(MIN_PER_STRATUM, min(n, 400))
    if os.environ.get("FI_GPU_CHECK_PER_STRATUM"):  # gpu_check.py --per-stratum
        n = int(os.environ["FI_GPU_CHECK_PER_STRATUM"])
    db = ctx.dir() / "sass.db"
    f: dict = {"per_stratum": n, "workers": w, "assumed_run_s": per_run}
    ctx.save(sass_n=n)
    t = time.monotonic()
    with keeping(f):
        ctx.sh([*FI, "--db", db, "plan", ctx.state["configs"]["sass"], "--injections", n,
                "--profile", f"baseline={ctx.state['profile']}"], "fi-campaign plan (profiles the hardened model)",
               env=env, timeout=max(30, ctx.left() * 0.4))
    f["plan_s"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    error = None
    try:
        took, stopped = run_until(ctx, [*FI, "--db", db, "run", "--per-gpu", w], "fi-campaign run", ctx.left() - 25, env,
                                  name="sass-run")
    except Failed as e:  # e.g. too many not_injected: the results so far still tell
        took, stopped, error = time.monotonic() - t, False, str(e)
    f.update(run_s=round(took, 1), stopped_at_deadline=stopped, strata=stratum_figures(db))
    from fi_campaign.store import Store

    store = Store.open(db)
    rows = list(store.export_rows())
    f["results"] = len(rows)
    f["mean_injection_s"] = round(sum(r["runtime_s"] or 0 for r in rows) / max(1, len(rows)), 2)
    f["injections_per_s"] = round(len(rows) / took, 3) if took else None
    states: dict[str, int] = {}
    for rec in store.injections().values():
        states[rec.state] = states.get(rec.state, 0) + 1
    f["injector_states"] = states
    f["count_checks"] = [c.__dict__ for c in store.count_checks()]
    if error:
        raise Failed(error, f)
    short = [k for k, v in f["strata"].items() if v["done"] < min(n, MIN_PER_STRATUM)]
    if short:
        raise Failed(f"fewer than {min(n, MIN_PER_STRATUM)} results in {', '.join(short)} before the deadline", f)
    return f


def framework(ctx: Ctx) -> dict:
    n = int(ctx.state.get("sass_n") or MIN_PER_STRATUM)
    db = ctx.dir() / "framework.db"
    t = time.monotonic()
    ctx.sh([*FI, "--db", db, "plan", ctx.state["configs"]["framework"], "--injections", n], "fi-campaign plan "
           "(framework level)", timeout=60)
    ctx.sh([*FI, "--db", db, "run", "--workers", "1"], "fi-campaign run (framework level, cuda)", timeout=ctx.left() - 5)
    return {"per_stratum": n, "wall_s": round(time.monotonic() - t, 1), "strata": stratum_figures(db)}


def inprocess_bench(ctx: Ctx) -> dict:
    """One network at a time, so that ResNet-20's figures stand even if ResNet-44's run out of time."""
    f: dict = {"archs": {}}
    for arch, needs_s in (("resnet20", 0.0), ("resnet44", 60.0)):
        if ctx.left() < needs_s:
            f.setdefault("not_run", []).append(f"{arch}: {ctx.left():.0f} s left")
            continue
        out = ctx.dir() / f"inprocess-{arch}.json"
        with keeping(f):
            ctx.sh([sys.executable, REPO / "bench" / "inprocess.py", "--device", "cuda", "--quick", "--archs", arch,
                    "--json", out], f"bench/inprocess.py --device cuda --quick --archs {arch}", timeout=ctx.left() - 3)
        got = json.loads(out.read_text())
        f["archs"].update(got.pop("archs"))
        f.update(got)
    return f


def process_bench(ctx: Ctx) -> dict:
    out = ctx.dir() / "process.json"
    ctx.sh([sys.executable, REPO / "bench" / "process.py", "--quick", "--injections", "3", "--device", "cuda",
            "--json", out], "bench/process.py --quick --device cuda", timeout=ctx.left() - 5)
    return json.loads(out.read_text())


STEP_FUNCTIONS: dict[str, Callable[[Ctx], dict]] = {
    "environment": environment, "install": install, "tool_host": tool_host, "tool_build": tool_build,
    "programs": programs, "configs": configs, "doctor": doctor, "c_program": c_program, "torch_dummy": torch_dummy,
    "workaround": workaround, "counts": counts, "sass_campaign": sass_campaign, "framework": framework,
    "inprocess_bench": inprocess_bench, "process_bench": process_bench,
}


def plain(x):
    """``x`` as strict JSON can hold it: NaN becomes null and infinities "inf" / "-inf"."""
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, float) and x in (float("inf"), float("-inf")):
        return "inf" if x > 0 else "-inf"
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    return x


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gpucheck.steps")
    ap.add_argument("name", choices=sorted(STEP_FUNCTIONS))
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--limit", type=float, required=True)
    ap.add_argument("--dry", action="store_true")
    args = ap.parse_args(argv)
    try:
        state = json.loads((args.work / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {}
    ctx = Ctx(args.name, args.work, args.dry, args.limit, state)
    result: dict
    try:
        result = {"status": "ok", "figures": STEP_FUNCTIONS[args.name](ctx)}
    except Failed as e:
        result = {"status": "failed", "figures": e.figures, "error": f"{args.name}: {e}"}
    except Skipped as e:
        result = {"status": "skipped", "figures": {}, "reason": str(e)}
    except Exception as e:  # noqa: BLE001 - any error of a step is its result, never the check's end
        traceback.print_exc()
        result = {"status": "failed", "figures": {}, "error": f"{args.name}: {type(e).__name__}: {last_line(str(e))}"}
    results = args.work / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{args.name}.json").write_text(json.dumps(plain(result), indent=2, default=str, allow_nan=False),
                                               encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
