"""The fi-campaign command line, paused at a chosen point of its reading, for tests that stop the
database server in the middle of a command: a deterministic "middle", where a timer would only
hope to hit one. Not part of fi-campaign.

    python tests/paused_cli.py FOLDER METHOD RETRY_S -- ARGS...

runs ``fi-campaign ARGS...`` in this process. When the command calls ``Store.METHOD`` it writes
FOLDER/paused and waits (at most PAUSE_S) for FOLDER/go before going on: before the call, or
for a method that yields batches, after its first batch has been handed out. ``RETRY_S``
shortens the session's wait for a server that went away, so that a test of giving up need not
wait the full minute.
"""

from __future__ import annotations

import functools
import inspect
import sys
import time
from pathlib import Path

PAUSE_S = 300.0


def pause(folder: Path) -> None:
    (folder / "paused").touch()
    deadline = time.monotonic() + PAUSE_S
    while not (folder / "go").exists():
        if time.monotonic() > deadline:
            raise SystemExit("paused_cli: nobody said go")
        time.sleep(0.02)


def pausing(method, folder: Path):
    if inspect.isgeneratorfunction(method) or method.__name__ == "export_batches":

        @functools.wraps(method)
        def batches(*args, **kwargs):
            for i, batch in enumerate(method(*args, **kwargs)):
                yield batch
                if i == 0:
                    pause(folder)

        return batches

    @functools.wraps(method)
    def call(*args, **kwargs):
        pause(folder)
        return method(*args, **kwargs)

    return call


def main() -> None:
    folder, name, retry_s, dashes, *args = sys.argv[1:]
    assert dashes == "--"
    from fi_campaign.cli import main as cli
    from fi_campaign.store import Store, session

    session.RETRY_S = float(retry_s)
    setattr(Store, name, pausing(getattr(Store, name), Path(folder)))
    cli.main(args, prog_name="fi-campaign")


if __name__ == "__main__":
    main()
