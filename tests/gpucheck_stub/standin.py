"""The stand-in of the GPU-step rehearsal: plays a program under fi-campaign's NVBit tool.

    standin.py python|pyhost -m fi_campaign.workload.program ROOT [FAULT] --out LOGITS.npy
    standin.py saxpy OUT.bin
    standin.py nvidia-smi --query-gpu=FIELDS --format=csv,noheader

The tool's mode comes from LD_PRELOAD as a campaign attaches it (profiler.so, injector.so,
injector-dummy.so, or none). Every line the tool would write is made by the tool's own logic
through its host build (FI_HOST_TEST, tests/host_test.cpp): profile lines, the injection-info
parser, the faults of each lane, the log records. FAKE_NO_PYTHON_CALLBACKS=1 plays the public
report on driver 580: inside a python3 process the tool loads but no callback arrives.
"""

import os
import subprocess
import sys
import zlib

import numpy as np

from fi_campaign.nvbitfi_tools.profile import parse_profile

LAUNCHES = {
    "python": [
        ("voidk0<float>(float*,int)", 40),
        ("voidk1<float>(float*,int)", 0),
        ("voidk2<float>(float*,int)", 300),
        ("voidk0<float>(float*,int)", 25),
        ("voidk3<float>(float*,int)", 64),
    ],
    "saxpy": [
        ("saxpy(int,float,float*,float*)", 5000),
        ("smooth(int,float*,float*)", 40000),
        ("scale(int,float,float*)", 5000),
    ]
    * 2,
}
MODELS = {"single_bit": 0, "warp_random": 1, "warp_xor": 2}


class Host:
    def __init__(self):
        p = subprocess.Popen([os.environ["FI_HOST_TEST"]], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert p.stdin is not None and p.stdout is not None
        self.p, self.stdin, self.stdout = p, p.stdin, p.stdout

    def __call__(self, *words):
        self.stdin.write(" ".join(map(str, words)) + "\n")
        self.stdin.flush()
        return self.stdout.readline().rstrip("\n")


def smi(args):
    fields = args[0].split("=", 1)[1].split(",")
    values = {
        "name": "NVIDIA H100 80GB HBM3 (stand-in)",
        "compute_cap": "9.0",
        "driver_version": "580.159.04",
        "memory.total": "81559 MiB",
    }
    print(", ".join(values[f] for f in fields))
    return 0


def main():
    role, args = sys.argv[1], sys.argv[2:]
    if role == "nvidia-smi":
        return smi(args)
    lib = os.environ.get("LD_PRELOAD", "")
    mode = (
        "profile"
        if lib.endswith("profiler.so")
        else "dummy"
        if lib.endswith("injector-dummy.so")
        else "inject"
        if lib.endswith("injector.so")
        else None
    )
    kind = "saxpy" if role == "saxpy" else "python"
    golden: bytes | np.ndarray
    if kind == "saxpy":
        out = args[0]
        golden = (np.arange(5000, dtype=np.float32) / 7).tobytes()
    else:
        out = args[args.index("--out") + 1]
        root = args[2]
        logits = np.random.default_rng(zlib.crc32(root.encode())).normal(size=(16, 10)).astype(np.float32)
        logits[:, 0] += 10
        golden = logits
    silent = role == "python" and os.environ.get("FAKE_NO_PYTHON_CALLBACKS") == "1"
    result = golden
    if mode is not None:
        log = open("nvbitfi-injection-log-temp.txt", "w")
        host = Host()
        lines = "".join(
            host(
                "profile",
                i,
                k,
                4,
                "FFMA",
                "fp32",
                n,
                "LDG",
                "ld",
                7,
                "ISETP",
                "pr",
                5,
                "EXIT",
                "nodest",
                3,
                "IMAD",
                "others",
                11 + i,
            )
            + "\n"
            for i, (k, n) in enumerate(LAUNCHES[kind])
        )
        if mode == "profile":
            log.write("" if silent else lines)
        else:
            log.write("format: fi-campaign-tool/1\nmode: inject\n" + ("dummy: true\n" if mode == "dummy" else ""))
            if not silent:
                result = inject(host, log, parse_profile(lines, "fi-campaign").launches, mode == "dummy", golden, kind)
        log.close()
    if kind == "saxpy":
        assert isinstance(golden, bytes)
        open(out, "wb").write(result if isinstance(result, bytes) else golden)
    else:
        np.save(out, result)
    return 0


def inject(host, log, launches, dummy, golden, kind):
    p = dict(zip(*[iter(host("params", "nvbitfi-injection-info.txt").split())] * 2, strict=False))
    kcount, iid = int(p["kcount"]), int(p["iid"])
    if kcount >= len(launches):
        log.write(f"result: not_injected; the run made {len(launches)} launches and never reached launch {kcount}\n")
        return golden
    launch = launches[kcount]
    log.write(f"launch: index {kcount}; kernel_name: {launch.kernel}; ctas: 4\n")
    log.write(host("counts", *[x for g, n in launch.groups.items() for x in (g, n)]) + "\n")
    if iid >= launch.groups["fp32"]:
        log.write(
            f"result: not_injected; launch {kcount} has {launch.groups['fp32']} fp32 thread-instructions, so "
            f"index {iid} was never reached\n"
        )
        return golden
    model = MODELS[p["model"]]
    bit = np.uint32(int(p["bit"], 16)).view(np.float32)
    xmin, alpha = (np.uint64(int(p[k], 16)).view(np.float64) for k in ("xmin", "alpha"))
    lanes = [0] if model == 0 else range(32)
    for lane in lanes:
        before = 0x3F800000 + lane
        after = (
            before
            if dummy
            else int(
                host("fault", model, before, repr(float(bit)), p["vseed"], lane, repr(float(xmin)), repr(float(alpha))),
                16,
            )
        )
        log.write(host("lane", lane, 12, before, after, "FFMA", 0x1A0, 64 + lane) + "\n")
    log.write(f"result: injected; {len(lanes)} of {len(lanes)} lanes\n")
    if dummy or iid % 3:
        return golden
    if kind == "saxpy":
        return (np.frombuffer(golden, np.float32) + 1).tobytes()
    faulty = golden.copy()
    faulty[5, 7] += 100.0
    return faulty


if __name__ == "__main__":
    sys.exit(main())
