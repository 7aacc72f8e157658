"""The suite itself: shared data found beside any checkout, and no timed assertion that a loaded
machine can fail (speed is measured in bench/)."""
from __future__ import annotations

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
        assert "perf_counter" not in text and "time.time()" not in text, \
            f"{name} times something: speed belongs in bench/, not in an assertion"
