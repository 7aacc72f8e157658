"""The suite itself: shared data found beside any checkout, no timed assertion that a loaded
machine can fail (speed is measured in bench/), and no polling loop without a deadline."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA, shared_data

TESTS = Path(__file__).resolve().parent


def sources() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(TESTS.glob("*.py")) if p.name != Path(__file__).name}


def test_shared_data_is_found_beside_the_checkout_or_skipped_with_its_path():
    assert SHARED_DATA == TESTS.parent.parent / "shared" / "data"
    with pytest.raises(pytest.skip.Exception, match=re.escape(str(SHARED_DATA / "no-such-copy"))):
        shared_data("no-such-copy")


def test_no_test_names_an_absolute_data_path_or_times_itself():
    for name, text in sources().items():
        assert not re.search(r"[\"']/work/", text), f"{name} names an absolute /work path; use shared_data()"
        assert "perf_counter" not in text and "time.time()" not in text, (
            f"{name} times something: speed belongs in bench/, not in an assertion"
        )


CLOCKS = {
    "monotonic",
    "monotonic_ns",
    "perf_counter",
    "perf_counter_ns",
    "time",
    "time_ns",
    "process_time",
    "now",
    "utcnow",
}


def is_clock_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    if isinstance(f, ast.Attribute):
        return f.attr in CLOCKS and isinstance(f.value, ast.Name) and f.value.id in ("time", "datetime")
    return isinstance(f, ast.Name) and f.id in CLOCKS - {"time", "now"}


def names_in(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def has_clock(node: ast.AST, readings: set[str]) -> bool:
    return any(is_clock_call(n) for n in ast.walk(node)) or bool(names_in(node) & readings)


def assignments(tree: ast.AST):
    """(target name, value) pairs, tuple assignments paired element by element."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    yield from (
                        (t.id, v) for t, v in zip(target.elts, node.value.elts, strict=False) if isinstance(t, ast.Name)
                    )
                elif isinstance(target, ast.Name) and node.value is not None:
                    yield target.id, node.value


def timed_assertions(source: str) -> list[int]:
    """Lines of assertions on a time the test measured itself (``time.monotonic() - t0 < 10``, or
    ``elapsed > 2`` after ``elapsed = time.monotonic() - t0``). A deadline (``time.monotonic() <
    deadline``) measures nothing: it only stops a wait that would otherwise never end."""
    tree = ast.parse(source)
    readings: set[str] = set()
    for _ in range(3):  # readings of readings
        readings |= {name for name, value in assignments(tree) if has_clock(value, readings)}

    def elapsed(node: ast.AST) -> bool:
        return any(
            isinstance(n, ast.BinOp)
            and isinstance(n.op, ast.Sub)
            and (has_clock(n.left, readings) or has_clock(n.right, readings))
            for n in ast.walk(node)
        )

    durations = {name for name, value in assignments(tree) if elapsed(value)}
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Assert) and (elapsed(node.test) or names_in(node.test) & durations)
    ]


def polls(loop: ast.While) -> bool:
    """A loop that waits: it sleeps, or waits on a process, a pipe or a terminal."""
    for node in ast.walk(loop):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name in ("sleep", "select", "poll"):
                return True
    return False


def undeadlined_polls(source: str) -> list[int]:
    """Lines of polling loops that no clock bounds: neither their condition nor their body reads
    a clock or a deadline."""
    tree = ast.parse(source)
    readings = {name for name, value in assignments(tree) if has_clock(value, set())}
    return [
        loop.lineno
        for loop in ast.walk(tree)
        if isinstance(loop, ast.While) and polls(loop) and not has_clock(loop, readings)
    ]


def test_no_assertion_on_a_time_the_test_measured():
    found = {name: lines for name, text in sources().items() if (lines := timed_assertions(text))}
    assert not found, f"assertions on measured times (speed belongs in bench/): {found}"


def test_every_polling_loop_has_a_deadline():
    found = {name: lines for name, text in sources().items() if (lines := undeadlined_polls(text))}
    assert not found, f"polling loops without a deadline (a hang would never end): {found}"


def test_the_scans_find_what_they_look_for():
    """The two scans above on the patterns they exist to catch, and on the ones they must pass."""
    assert timed_assertions("t0 = time.monotonic()\nrun()\nassert time.monotonic() - t0 < 8\n") == [3]
    assert timed_assertions("t0 = time.monotonic()\nelapsed = time.monotonic() - t0\nassert elapsed > 2.0\n") == [3]
    assert timed_assertions("start, x = time.perf_counter(), 1\nassert time.perf_counter() - start < 1\n") == [2]
    assert timed_assertions("deadline = time.monotonic() + 60\nassert time.monotonic() < deadline, 'late'\n") == []
    assert undeadlined_polls("while not ready():\n    time.sleep(0.2)\n") == [1]
    assert undeadlined_polls("while p.poll() is None:\n    pass\n") == [1]
    assert (
        undeadlined_polls(
            "deadline = time.monotonic() + 9\nwhile not ready():\n"
            "    assert time.monotonic() < deadline, 'never ready'\n    time.sleep(1)\n"
        )
        == []
    )
    assert undeadlined_polls("while held := claim():\n    record(held)\n") == []
