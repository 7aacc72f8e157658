"""The user's own GPU program as a campaign's workload (config key ``workload``): an NVBitFI
test-app folder used unchanged, or a command.

An app folder is run as NVBitFI's scripts run it (``scripts/common_functions.py`` ``set_env``,
``scripts/run_one_injection.py``): its ``run.sh`` started in the run directory with ``BIN_DIR``,
``BIN_PATH``, ``APP_DIR``, ``DATASET_DIR``, ``NVBITFI_HOME`` and ``PRELOAD_FLAG`` set, and its
``sdc_check.sh`` run there afterwards, whose four logs say what differs. ``APP_DIR`` is a folder
of links to the user's files beside the golden files, so the user's folder is never written:
the golden files are the folder's own ``golden_*`` files when it has any, else those of
fi-campaign's first golden run. A command is compared by fi-campaign itself: its ``outputs``
and its stdout (less ``ignore_lines``) as ``compare`` says.

An SDC is critical_sdc when the ``critical`` rule says so; without one, every SDC is
critical_sdc (nothing says the change is tolerable), and each result's detail says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fi_campaign.classify import CRITICAL_SDC, DUE, MASKED, TOLERABLE_SDC, Outcome
from fi_campaign.config import OwnWorkload
from fi_campaign.workload import process
from fi_campaign.workload.rules import CHECK_TIMEOUT_S, ProgramError, Rule, executable, max_errors, rule

RUN_SH, SDC_CHECK = "run.sh", "sdc_check.sh"
DIFF_LOGS = {
    "diff.log": "output",
    "stdout_diff.log": "stdout",
    "stderr_diff.log": "stderr",
    "special_check.log": "special check",
}
GOLDEN = "golden_"
APP_LOGS = ("run.sh.stdout", "run.sh.stderr")  # run.sh's own output; the program's is stdout.txt, stderr.txt
# files in a run directory that are not the program's outputs
NOT_OUTPUTS = {
    *APP_LOGS,
    *DIFF_LOGS,
    "sdc_check.out",
    "nvbitfi-injection-info.txt",
    "nvbitfi-injection-log-temp.txt",
    "nvbitfi-igprofile.txt",
}
DEFAULT_CRITICAL = "critical by default: no critical rule, every SDC counts as critical_sdc"


def _program(spec: OwnWorkload) -> list[str]:
    """The command line with its program found: a path, or a name on PATH."""
    assert spec.command, "a command workload has a program"
    first = spec.command[0]
    if "/" in first:
        path = executable(Path(first), "workload.command's program")
    else:
        found = shutil.which(first)
        if found is None:
            raise ProgramError(f"workload.command's program {first} is not found on PATH.")
        path = Path(found)
    return [str(path), *spec.command[1:]]


@dataclass(frozen=True)
class Program:
    """One prepared own-program workload: its folder in the runs (``root``, which holds
    workload.json, the golden runs and the injection runs) and how each run is started and judged."""

    spec: OwnWorkload
    root: Path
    home: str
    compare: Rule | None
    critical: Rule | None

    @property
    def app(self) -> Path | None:
        return Path(self.spec.app) if self.spec.app else None

    @property
    def app_dir(self) -> Path:
        """APP_DIR: links to the user's folder's files, and the golden files."""
        return self.root / "app"

    @property
    def golden_dir(self) -> Path:
        """The golden files a rule is given: APP_DIR for an app, else the saved golden outputs."""
        return self.app_dir if self.app else self.root / "golden"

    @property
    def logs(self) -> tuple[str, str]:
        return APP_LOGS if self.app else ("stdout.txt", "stderr.txt")

    def command(self, d: Path) -> list[str]:
        if self.app:
            return [str(self.app / RUN_SH), *self.spec.args]
        return _program(self.spec)

    def env(self, base: dict[str, str], tool: Path | None = None) -> dict[str, str]:
        """The environment of a run: NVBitFI's variables for an app folder. The tool goes into
        PRELOAD_FLAG, which run.sh puts in front of its binary, rather than into run.sh's own
        LD_PRELOAD; CUDA_INJECTION64_PATH stays set for programs that reset LD_PRELOAD."""
        env = dict(base) | {"NVBITFI_HOME": self.home}
        if not self.app:
            return env
        if tool is not None and env.get("LD_PRELOAD") == str(tool):
            del env["LD_PRELOAD"]
        return env | {
            "BIN_DIR": self.spec.bin or str(self.app),
            "BIN_PATH": self.spec.bin or str(self.app),
            "APP_DIR": str(self.app_dir),
            "DATASET_DIR": self.spec.dataset or str(self.app),
            "PRELOAD_FLAG": f"LD_PRELOAD={tool}" if tool is not None else "",
        }

    # golden runs

    def golden(self, runs: int, env: dict[str, str], timeout_s: float) -> float:
        """Run the program ``runs`` times without a fault; refuse one whose outputs differ
        between runs (naming the file), and return the slowest run's time. Cached in the root
        under a lock, like the network workloads' golden runs."""
        import fcntl

        meta = self.root / "golden.json"
        key = hashlib.sha256((self.root / "workload.json").read_bytes()).hexdigest()
        with open(self.root / ".golden.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                info = json.loads(meta.read_text())
                if info.get("key") == key and info.get("runs", 0) >= runs:
                    return float(info["slowest_s"])
            except (OSError, ValueError, TypeError, KeyError):
                pass
            slowest = self._golden(runs, env, timeout_s)
            meta.write_text(json.dumps({"key": key, "runs": runs, "slowest_s": slowest}))
            return slowest

    def _golden(self, runs: int, env: dict[str, str], timeout_s: float) -> float:
        slowest = 0.0
        dirs = []
        for g in range(runs):
            d = self.root / f"golden-{g}"
            shutil.rmtree(d, ignore_errors=True)
            ended = process.run(self.command(d), d, timeout_s, self.env(env), self.logs)
            if ended.due_reason():
                raise ProgramError(f"golden run {g} of the program failed ({ended.due_reason()}); see {d}.")
            if self.app and not (d / "stdout.txt").is_file():
                raise ProgramError(
                    f"golden run {g}: {self.app / RUN_SH} wrote no stdout.txt; NVBitFI's run.sh sends the "
                    "program's output to stdout.txt and stderr.txt in the run directory."
                )
            for out in self.spec.outputs:
                if not (d / out).is_file():
                    raise ProgramError(f"golden run {g}: the program never wrote its output {out}; see {d}.")
            dirs.append(d)
            slowest = max(slowest, ended.runtime_s)
        self._keep_golden(dirs[0])
        given = self.app is not None and self._given_golden()  # then run 0 is checked against them too
        for g, d in enumerate(dirs):
            if self.app and (g or given):
                self._agree_app(dirs[0], d, g)
            elif g:
                self._agree_command(d, g)
        return slowest

    def _written(self, d: Path) -> list[str]:
        return sorted(p.name for p in d.iterdir() if p.is_file() and p.name not in NOT_OUTPUTS)

    def _given_golden(self) -> bool:
        assert self.app is not None, "only an app folder brings golden files"
        return any(p.name.startswith(GOLDEN) for p in self.app.iterdir())

    def _keep_golden(self, d: Path) -> None:
        """The golden files: an app folder's own, else the first golden run's outputs."""
        if self.app:
            if not self._given_golden():
                for name in self._written(d):
                    target = self.app_dir / f"{GOLDEN}{name}"
                    target.unlink(missing_ok=True)  # never write through a link into the user's folder
                    shutil.copyfile(d / name, target)
            return
        g = self.golden_dir
        shutil.rmtree(g, ignore_errors=True)
        g.mkdir(parents=True)
        for name in (*self.spec.outputs, "stdout.txt"):
            shutil.copyfile(d / name, g / name)

    def _agree_app(self, first: Path, d: Path, g: int) -> None:
        """sdc_check.sh must find a fault-free run clean; what differs is named."""
        differs = self.sdc_check(d)
        if not differs:
            return
        if self._given_golden():
            raise ProgramError(
                f"golden run {g} differs from {self.app}'s golden files ({', '.join(differs)} per "
                f"sdc_check.sh); see {d}."
            )
        raise ProgramError(
            f"golden runs 0 and {g} of the program disagree on {self._differing(first, d) or differs[0]} "
            f"(non-deterministic output), so no injection could be judged; see {d}."
        )

    def _differing(self, first: Path, d: Path) -> str | None:
        names = sorted(set(self._written(first)) | set(self._written(d)))
        for name in names:
            a, b = first / name, d / name
            if not (a.is_file() and b.is_file() and a.read_bytes() == b.read_bytes()):
                return name
        return None

    def _agree_command(self, d: Path, g: int) -> None:
        differs = self._command_differs(d)
        if differs:
            raise ProgramError(
                f"golden runs 0 and {g} of the program disagree on {differs[0]} (non-deterministic output), "
                f"so no injection could be judged; see {d}."
            )

    # judging

    def sdc_check(self, d: Path) -> list[str]:
        """Run the app's sdc_check.sh in run directory ``d``; what its logs say differs."""
        assert self.app is not None, "only an app folder has sdc_check.sh"
        script = executable(self.app / SDC_CHECK, "the app's")
        env = self.env(dict(os.environ))
        try:
            with open(d / "sdc_check.out", "wb") as out:
                subprocess.run(
                    [str(script)], cwd=d, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=CHECK_TIMEOUT_S
                )
        except subprocess.TimeoutExpired:
            raise ProgramError(f"{script} did not finish within {CHECK_TIMEOUT_S:.0f} s on {d}.") from None
        differs = []
        for log, what in DIFF_LOGS.items():
            path = d / log
            if not path.is_file():
                raise ProgramError(f"{script} wrote no {log} in {d}; NVBitFI's sdc_check.sh writes all four logs.")
            if path.stat().st_size:
                differs.append(what)
        return differs

    def _stdout(self, path: Path) -> list[str]:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        patterns = [re.compile(p) for p in self.spec.ignore_lines]
        return [line for line in lines if not any(p.search(line) for p in patterns)]

    def _command_differs(self, d: Path) -> list[str]:
        """What of a command's outputs differs from the golden ones, as ``compare`` judges."""
        g = self.golden_dir
        differs = []
        if self.spec.stdout == "compare" and self._stdout(d / "stdout.txt") != self._stdout(g / "stdout.txt"):
            differs.append("stdout")
        c = self.compare
        if c is not None and c.threshold is None:
            return differs + ([] if c.ask(g, d) else ["outputs"])
        for out in self.spec.outputs:
            if c is None:
                same = (g / out).read_bytes() == (d / out).read_bytes()
            else:
                assert c.threshold is not None, "a rule without a function or script is a tolerance"
                err = max_errors(g / out, d / out)
                same = err is not None and err[0] <= c.threshold
            if not same:
                differs.append(out)
        return differs

    def judge(self, d: Path, ended: process.Ended) -> Outcome:
        """A finished run as NVBitFI classifies it: DUE (timeout, signal, exit status, a CUDA
        error in the program's output), SDC (an output, stdout, stderr or the special check
        differs), else masked; an SDC critical or tolerable by the critical rule."""
        reason = ended.due_reason()
        if reason is None:
            for name in ("stdout.txt", "stderr.txt"):
                p = d / name
                if p.is_file() and process.CUDA_ERROR.search(p.read_bytes()[-65536:].decode(errors="replace")):
                    reason = f"CUDA error in the program's {name}"
                    break
        if reason is None:
            missing = [o for o in self.spec.outputs if not (d / o).is_file()]
            if missing:
                reason = f"the program wrote no {missing[0]}"
        if reason is not None:
            return Outcome.without_outputs(DUE, reason)
        differs = self.sdc_check(d) if self.app else self._command_differs(d)
        worst = self._errors(d)
        if not differs:
            return Outcome(outcome=MASKED, max_abs_diff=0.0)
        critical, why = self._critical(d, worst)
        return Outcome(
            outcome=CRITICAL_SDC if critical else TOLERABLE_SDC,
            max_abs_diff=None if worst is None else worst[0],
            reason=f"SDC: {', '.join(differs)} differs; {why}",
        )

    def _numeric_files(self, d: Path) -> list[tuple[Path, Path]]:
        if self.app:
            return [
                (self.app_dir / f"{GOLDEN}{name}", d / name)
                for name in self._written(d)
                if (self.app_dir / f"{GOLDEN}{name}").is_file()
            ]
        return [(self.golden_dir / o, d / o) for o in self.spec.outputs]

    def _errors(self, d: Path) -> tuple[float, float] | None:
        """The largest absolute and relative error over the outputs that differ and read as
        numbers (the others cannot be measured); None when no such output differs."""
        worst = None
        for golden, faulty in self._numeric_files(d):
            if golden.read_bytes() == faulty.read_bytes():
                continue
            err = max_errors(golden, faulty)
            if err is not None:
                worst = err if worst is None else (max(worst[0], err[0]), max(worst[1], err[1]))
        return worst

    def _critical(self, d: Path, worst: tuple[float, float] | None) -> tuple[bool, str]:
        c = self.critical
        if c is None:
            return True, DEFAULT_CRITICAL
        if c.threshold is not None:
            if worst is None:
                return True, "critical: no output that differs reads as numbers, so no relative error was measured"
            verdict = "critical" if worst[1] > c.threshold else "tolerable"
            return worst[
                1
            ] > c.threshold, f"{verdict}: largest relative error {worst[1]:.3g}, threshold {c.threshold:g}"
        yes = c.ask(self.golden_dir, d)
        return yes, f"{'critical' if yes else 'tolerable'} by {c.ref}"


def critical_note(spec: OwnWorkload) -> str:
    """One sentence for reports: which rule made an SDC critical_sdc, or that the default did."""
    judged = "sdc_check.sh's logs" if spec.app else f"compare {spec.compare}"
    c = spec.critical
    if c is None:
        rule_text = "no critical rule was given, so every SDC counts as critical_sdc (the default)"
    elif isinstance(c, dict):
        rule_text = f"an SDC is critical_sdc when its largest relative error exceeds {c['relative_error']:g}"
    else:
        rule_text = f"an SDC is critical_sdc when {c} says so"
    return f"Own program {spec.label}: outputs judged by {judged}; {rule_text}."


def check(spec: OwnWorkload) -> None:
    """What would stop every run, refused before anything runs: a missing or non-executable
    run.sh or sdc_check.sh, a program not found, a rule that cannot be loaded."""
    if spec.app:
        app = Path(spec.app)
        if not app.is_dir():
            raise ProgramError(f"workload.app {app} is not a folder.")
        if not (app / RUN_SH).is_file():
            raise ProgramError(
                f"workload.app {app} has no run.sh; an NVBitFI test-app folder has run.sh and sdc_check.sh."
            )
        executable(app / RUN_SH, "the app's")
        if not (app / SDC_CHECK).is_file():
            raise ProgramError(
                f"workload.app {app} has no sdc_check.sh; an NVBitFI test-app folder has run.sh and sdc_check.sh."
            )
        executable(app / SDC_CHECK, "the app's")
    else:
        _program(spec)


def digest(spec: OwnWorkload) -> str:
    """The sha256 of what the program is: the app's run.sh, sdc_check.sh and golden files, or
    the command's program file, so a store names the program it was planned on (and golden runs
    cached against it are redone when they change)."""
    h = hashlib.sha256()
    if spec.app:
        app = Path(spec.app)
        files = [app / RUN_SH, app / SDC_CHECK, *sorted(p for p in app.glob(f"{GOLDEN}*") if p.is_file())]
    else:
        files = [Path(_program(spec)[0])]
    for f in files:
        h.update(f.name.encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()


def open_program(spec: OwnWorkload, root: Path, home: str | None) -> Program:
    """The program's folder in the runs, made ready: workload.json (what golden runs are cached
    against) and, for an app, APP_DIR's links to the user's files."""
    check(spec)
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    program = Program(
        spec=spec,
        root=root,
        home=home or os.environ.get("NVBITFI_HOME", ""),
        compare=rule(spec.compare, "compare", "tolerance"),
        critical=rule(spec.critical, "critical", "relative_error"),
    )
    from dataclasses import asdict

    text = json.dumps({"workload": asdict(spec), "sha256": digest(spec)}, sort_keys=True)
    tmp = root / f".workload.{os.getpid()}.json"
    tmp.write_text(text)
    os.replace(tmp, root / "workload.json")
    if spec.app:
        program.app_dir.mkdir(exist_ok=True)
        for entry in Path(spec.app).iterdir():
            link = program.app_dir / entry.name
            if entry.name.startswith(GOLDEN) and link.exists() and not link.is_symlink():
                link.unlink()  # golden files made before the folder brought its own
            if not link.is_symlink() and not link.exists():
                try:
                    link.symlink_to(entry.resolve())
                except FileExistsError:  # another worker made it
                    pass
    return program
