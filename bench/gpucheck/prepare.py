"""The GPU check's steps that need no GPU: the machine as found, the install from the carried
wheels, the tool's builds, the two programs of the repository and the campaign configs. They
run in a dry run on the CPU machine too, and first on the GPU machine.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from bench.gpucheck import wheels
from bench.gpucheck.context import (
    DUMMY_INJECTIONS,
    FI,
    FORMATS_INJECTIONS,
    HERE,
    MIN_PER_STRATUM,
    NVBIT,
    REPO,
    WHEELS,
    Arg,
    Ctx,
    Failed,
    Skipped,
    folder_mb,
    last_line,
    sha256,
)


def environment(ctx: Ctx) -> dict:
    f: dict = {
        "python": {"version": platform.python_version(), "executable": sys.executable, "prefix": sys.prefix},
        "cores": os.cpu_count(),
        "glibc": platform.libc_ver()[1],
        "kernel": platform.release(),
    }
    try:
        f["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    smi = shutil.which("nvidia-smi")
    if smi:
        q = subprocess.run(
            [smi, "--query-gpu=name,driver_version,compute_cap,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        f["gpus"] = [
            dict(zip(("name", "driver", "compute_cap", "memory"), (x.strip() for x in row.split(",")), strict=False))
            for row in q.stdout.strip().splitlines()
            if row.strip()
        ]
    nvcc = shutil.which("nvcc") or next(
        (
            str(p)
            for p in (Path(os.environ.get("CUDA_HOME", "/nonexistent")) / "bin/nvcc", Path("/usr/local/cuda/bin/nvcc"))
            if p.is_file()
        ),
        None,
    )
    for key, exe, args in (
        ("nvcc", nvcc, ["--version"]),
        ("cmake", shutil.which("cmake"), ["--version"]),
        ("gxx", shutil.which("g++"), ["--version"]),
        ("pip", sys.executable, ["-m", "pip", "--version"]),
    ):
        if exe:
            out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=60).stdout
            f[key] = (
                next((x for x in out.splitlines() if "release" in x), None)
                if key == "nvcc"
                else last_line(out.splitlines()[0] if out.strip() else "")
            )
        else:
            f[key] = None
    include, _ = python_build_paths()
    f["python_headers"] = str(include / "Python.h") if (include / "Python.h").is_file() else None
    # NVBit disassembles every function it instruments with nvdisasm (NVDISASM, else the one on PATH)
    beside = Path(nvcc).resolve().parent / "nvdisasm" if nvcc else None
    f["nvdisasm"] = shutil.which("nvdisasm") or (str(beside) if beside and beside.is_file() else None)
    off_path = [
        str(Path(x).parent) for x, name in ((nvcc, "nvcc"), (f["nvdisasm"], "nvdisasm")) if x and not shutil.which(name)
    ]
    if off_path:  # CUDA's tools outside PATH: the later steps get their folder on it
        ctx.save(tool_path=sorted(set(off_path)))
    try:
        import torch

        f["torch"] = {
            "version": torch.__version__,
            "cuda": torch.version.cuda,
            "file": torch.__file__,
            "cuda_available": torch.cuda.is_available(),
        }
        if torch.cuda.is_available():
            f["torch"]["device"] = torch.cuda.get_device_name(0)
            f["torch"]["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    except Exception as e:  # noqa: BLE001 - a broken torch is itself the finding
        f["torch"] = {"error": f"{type(e).__name__}: {e}"}
    f["nvbit"] = nvbit_release()
    carried = wheels.carried(WHEELS) if WHEELS.is_dir() else []
    f["wheels"] = {
        "files": [w.path.name for w in carried],
        "mb": folder_mb(WHEELS),
        "missing": wheels.missing_from(WHEELS) if WHEELS.is_dir() else sorted(wheels.listed()),
    }
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
    return {
        "present": True,
        "version": m[1] if m else None,
        "libnvbit_sha256": sha256(lib) if lib.is_file() else None,
        "source": source.read_text().strip() if source.is_file() else None,
        "prebuilt": sorted(p.name for p in NVBIT.glob("prebuilt-*")),
    }


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
        ctx.sh(
            [*pip, "wheel", "-q", "--no-index", "--find-links", WHEELS, "--no-deps", "-w", wheel_dir, REPO],
            "building fi-campaign's wheel offline (setuptools from .whl)",
            timeout=120,
        )
    except Failed as e:
        if not ctx.dry:  # the carried requirements at least, beside the working tree's fi-campaign
            runtime = [w.path for w in wheels.carried(WHEELS) if w.name not in wheels.BUILD_ONLY]
            subprocess.run(
                [
                    *pip,
                    "install",
                    "-q",
                    "--no-index",
                    "--no-deps",
                    "--no-compile",
                    "--target",
                    str(site),
                    *map(str, runtime),
                ],
                check=False,
            )
            raise Failed(
                f"{e}; later steps use fi-campaign from the working tree (src/) and the carried wheels", f
            ) from None
        raise
    f["wheel_build_s"] = round(time.monotonic() - t, 1)
    ours = next(wheel_dir.glob("fi_campaign-*.whl"))
    f["wheel"] = {"file": ours.name, "mb": round(ours.stat().st_size / 2**20, 1)}
    report = ctx.dir() / "resolve.json"
    resolve: list[Arg] = [
        *pip,
        "install",
        "--dry-run",
        "-q",
        "--no-index",
        "--find-links",
        WHEELS,
        "--find-links",
        wheel_dir,
        "--report",
        report,
    ]
    if ctx.dry:
        stand_ins = ctx.dir("image-stand-ins")
        origin = wheels.write_stand_ins(stand_ins)
        resolve += [
            "--ignore-installed",
            "--only-binary=:all:",
            "--python-version",
            "3.12",
            "--implementation",
            "cp",
            "--abi",
            "cp312",
            *[x for p in wheels.PLATFORMS for x in ("--platform", p)],
            "--find-links",
            stand_ins,
        ]
    t = time.monotonic()
    try:
        ctx.sh(
            [*resolve, "fi-campaign[bench]"],
            "resolving fi-campaign[bench] from .whl and "
            + ("stand-ins for the GPU image (Python 3.12)" if ctx.dry else "this machine's packages"),
            timeout=120,
        )
    except Failed as e:
        if not ctx.dry:  # every carried requirement and fi-campaign anyway, so that the later steps can try
            runtime = [ours, *(w.path for w in wheels.carried(WHEELS) if w.name not in wheels.BUILD_ONLY)]
            subprocess.run(
                [
                    *pip,
                    "install",
                    "-q",
                    "--no-index",
                    "--no-deps",
                    "--no-compile",
                    "--target",
                    str(site),
                    *map(str, runtime),
                ],
                check=False,
            )
            raise Failed(f"{e}; every carried wheel was installed anyway, without pip's resolution", f) from None
        raise
    f["resolve_s"] = round(time.monotonic() - t, 1)
    plan = wheels.resolution(report)
    carried = {w.name: w for w in wheels.carried(WHEELS)}
    if ctx.dry:
        image = {
            n: v
            for n, v in plan.items()
            if v["file"].endswith("-py3-none-any.whl")
            and n not in carried
            and n != "fi-campaign"
            and (stand_ins / v["file"]).exists()
        }
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
    ctx.sh(
        [*pip, "install", "-q", "--no-index", "--no-deps", "--no-compile", "--target", site, *files],
        "installing into the scratch site",
        timeout=120,
    )
    f["install_s"] = round(time.monotonic() - t, 1)
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(site), *([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])]),
    )
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


def tool_host(ctx: Ctx) -> dict:
    from fi_campaign.models import sampler
    from fi_campaign.nvbitfi_tools import build, sites

    src = build.tool_sources()
    exe = ctx.dir() / "host_test"
    t = time.monotonic()
    if shutil.which("g++") is None:
        raise Failed("g++ is not installed, so the tool's host logic cannot be built")
    ctx.sh(
        ["g++", "-std=c++17", "-O2", "-ffp-contract=off", src / "tests" / "host_test.cpp", "-o", exe],
        "g++ of the tool's host test",
        timeout=120,
    )
    f: dict = {"host_build_s": round(time.monotonic() - t, 1)}
    ctx.save(host_test=str(exe))
    queries = [("masks", "0.3262"), ("value", "99", "2.0", "1.4543958", *["0x3f8ccccd"] * 32)]
    done = subprocess.run(
        [str(exe)], input="\n".join(" ".join(q) for q in queries) + "\n", capture_output=True, text=True, timeout=30
    )
    answers = done.stdout.splitlines()
    import numpy as np

    bit = sites.bit_position(0.3262)
    want_value = " ".join(
        f"{b:08x}" for b in sampler.warp_values(np.full(32, np.float32(1.1)), 99, 2.0, 1.4543958).view(np.uint32)
    )
    f["host_agrees"] = len(answers) == 2 and answers[0].split()[0] == str(bit) and answers[1] == want_value
    if not f["host_agrees"]:
        raise Failed(f"the host build disagrees with the Python side: {answers[:2]}", f)
    nvcc = build.find_nvcc()
    if nvcc is None:
        f["cubin"] = "skipped: no nvcc"
        return f
    sm = ctx.state.get("sm", "90")
    t = time.monotonic()
    ctx.sh(
        [
            nvcc,
            f"-arch=sm_{sm}",
            "-rdc=true",
            "-maxrregcount=24",
            "--cubin",
            src / "inject_funcs.cu",
            "-o",
            ctx.dir() / "inject.cubin",
        ],
        f"nvcc of the injected functions for sm_{sm}",
        timeout=120,
    )
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
        ctx.sh(
            [*FI, "injector", "build", "--nvbit", NVBIT, "--arch", f"sm_{sm}", "--out", out],
            f"fi-campaign injector build --arch sm_{sm}",
            timeout=ctx.left() - 5,
        )
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
        symbols[rel] = all(
            re.search(rf"\bT {fn}$", nm, flags=re.M)
            for fn in ("nvbit_at_init", "nvbit_at_cuda_event", "nvbit_tool_init", "nvbit_at_term")
        )
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
            ctx.sh(
                [nvcc, f"-arch=sm_{sm}", "-O2", HERE / "saxpy.cu", "-o", out / "saxpy"], "nvcc saxpy.cu", timeout=120
            )
            f["saxpy_build_s"] = round(time.monotonic() - t, 1)
            ctx.save(saxpy=str(out / "saxpy"))
            example = REPO / "nvbitfi_tools" / "examples" / "vectoradd"  # docs/NVBITFI.md, "Your own program"
            ctx.sh(
                [nvcc, f"-arch=sm_{sm}", "-O2", example / "vectoradd.cu", "-o", out / "vectoradd"],
                "nvcc vectoradd.cu (the own-program example)",
                timeout=120,
            )
            ctx.save(vectoradd=str(out / "vectoradd"))
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
        flags = [
            f"-I{include}",
            f"-L{libdir}",
            f"-lpython{version}",
            *(sysconfig.get_config_var("LIBS") or "").split(),
            *(sysconfig.get_config_var("SYSLIBS") or "").split(),
            "-ldl",
            f"-Wl,-rpath,{libdir}",
            "-rdynamic",
        ]
        try:
            ctx.sh(["gcc", "-O2", "-Wall", HERE / "pyhost.c", *flags, "-o", out / "pyhost"], "gcc pyhost.c", timeout=60)
            env = dict(os.environ, FI_PYHOST_NO_CUDA="1", FI_PYHOST_PYTHON=sys.executable)
            probe = ctx.sh(
                [out / "pyhost", "-c", "import sys, torch, fi_campaign; print(sys.prefix, torch.__version__)"],
                "pyhost embedding this Python (CUDA part skipped)",
                env=env,
                timeout=60,
            )
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
    assert p.stdin is not None and p.stdout is not None
    for i, fp32 in enumerate([40, 0, 300, 25]):
        p.stdin.write(
            f"profile {i} voidk{i}<float>(float*,int) 4 FFMA fp32 {fp32} LDG ld 7 ISETP pr 5 "
            f"EXIT nodest 3 IMAD others 11\n"
        )
        p.stdin.flush()
        lines.append(p.stdout.readline())
    p.stdin.close()
    p.wait(timeout=10)
    profile.write_text("".join(lines))
    for name in ("dummy", "sass", "framework", "formats"):
        db = out / f"{name}.db"
        for leftover in out.glob(f"{name}.db*"):
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        args: list[Arg] = [*FI, "--db", db, "plan", written[name]]
        if name in ("dummy", "sass"):
            args += ["--profile", str(profile)]
        if name in ("sass", "framework"):
            args += ["--injections", str(MIN_PER_STRATUM)]
        ctx.sh(args, f"fi-campaign plan {name}.yaml", timeout=120)
        f[f"{name}_planned"] = planned(db)
    return f


def campaign_configs(home: str, framework_device: str) -> dict[str, dict]:
    """The DUMMY campaign, the SASS campaign and its framework-level twin (on ``framework_device``).
    Images and batch are small (16): every SASS run is one instrumented process."""
    common = {
        "seed": 2022,
        "images": {"source": "bundled", "count": 16, "seed": 0},
        "batch_size": 16,
        "golden_runs": 2,
        "math": "fp32",
    }
    nv = {"home": home, "dialect": "fi-campaign", "group": "fp32"}
    pair = {"baseline": "zoo:resnet20-cifar10-baseline", "hardened": "zoo:resnet20-cifar10-hardened"}
    return {
        "dummy": {
            "name": "gpu-check-dummy",
            "backend": "nvbitfi",
            "device": "cuda",
            **common,
            "models": {"baseline": pair["baseline"]},
            "modes": ["single_bit"],
            "injections": DUMMY_INJECTIONS,
            "nvbitfi": {**nv, "dummy": True},
        },
        "sass": {
            "name": "gpu-check-sass",
            "backend": "nvbitfi",
            "device": "cuda",
            **common,
            "models": pair,
            "modes": ["single_bit", "warp_random"],
            "injections": MIN_PER_STRATUM,
            "fault_model": {"table": "dsn2021-fu", "op": "FFMA", "size": "common"},
            "nvbitfi": nv,
        },
        "framework": {
            "name": "gpu-check-framework",
            "backend": "pytorch",
            "device": framework_device,
            **common,
            "models": pair,
            "modes": ["single_bit", "warp_random"],
            "injections": MIN_PER_STRATUM,
            "fault_model": {"table": "dsn2021-fu", "op": "FFMA", "size": "common"},
        },
        "formats": {  # weight faults and a half-precision network on the GPU, after the twin
            "name": "gpu-check-formats",
            "backend": "pytorch",
            "device": framework_device,
            **common,
            "models": {
                "baseline": pair["baseline"],
                "hardened-bf16": {"checkpoint": pair["hardened"], "dtype": "bfloat16"},
            },
            "modes": ["single_bit", "weight_bit", "weight_stuck_at"],
            "injections": FORMATS_INJECTIONS,
        },
    }


def planned(db: Path) -> dict[str, int]:
    from fi_campaign.store import Store

    return {f"{m} {mode}": n for m, mode, _, n in Store.open(db).progress()}
