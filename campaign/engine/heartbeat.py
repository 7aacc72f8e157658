"""A worker's heartbeat: a thread that renews the lease of the sites the worker holds while a
long injection runs, and returns to pending the sites of workers that stopped beating.

Leases can then be short (a vanished worker's sites are free again within one lease) while a
single injection may take minutes. A worker stuck in one chunk for longer than ``stuck_s``
stops renewing, so even a hung process, alive but making no progress, loses its sites.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from fi_campaign.store import Store


class Heartbeat:
    def __init__(
        self, store: Store, owner: str, lease_s: float, alive: Callable[[str], bool], lock: threading.Lock
    ) -> None:
        self.store, self.owner, self.lease_s, self.alive, self.lock = store, owner, lease_s, alive, lock
        self.stuck_s = float("inf")
        self._chunk_started: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat {owner}", daemon=True)
        self.beats = 0

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def chunk(self, started: bool, stuck_s: float | None = None) -> None:
        """The worker begins (or ends) a chunk that should take no longer than ``stuck_s``."""
        self._chunk_started = time.monotonic() if started else None
        if stuck_s is not None:
            self.stuck_s = stuck_s

    def _loop(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            started = self._chunk_started
            if started is not None and time.monotonic() - started > self.stuck_s:
                continue  # stuck: let the lease run out so another worker takes the sites
            try:
                with self.lock:
                    self.store.renew(self.owner, self.lease_s)
                self.store.release_stale(self.alive)
                self.beats += 1
            except Exception:  # noqa: BLE001 - a heartbeat must outlive a database restart; next beat retries
                pass
