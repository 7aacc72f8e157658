"""Windows of several chunks claimed at once, and sites of one layer together in them.

An in-process worker claims a window of up to WINDOW_CHUNKS chunks in site-id order, so that one
claim's cost (a few ms in SQLite, more on a remote PostgreSQL) is shared by all of them instead
of weighing on every chunk of a small network. The window runs sorted by layer: a resumed pass
costs what runs from its earliest fault onwards, whatever the other rows hold, and a whole pass
edits few layers instead of dozens (on mobilenet_v3_small, 64 sites drawn at random hit about 24
of its 54 targets, sorted 2.5). Claims stay in id order, so the finished sites are always the first ones
drawn except for the windows in flight: a run stopped at any moment leaves a near-random sample
of the stratum, never one layer's sites.
"""

from __future__ import annotations

from fi_campaign.store import Site

WINDOW_CHUNKS = 32  # ResNet-20, elements: passes cost 1/1.43 of a whole one at 8 chunks, 1/1.54 at 32


def window_size(chunk: int, pending: int, workers: int) -> int:
    """Sites to claim at once: up to WINDOW_CHUNKS chunks, but no more than this worker's share
    of the pending sites, so that every worker gets some; a whole number of chunks."""
    share = -(-pending // max(workers, 1))
    return chunk * max(1, min(WINDOW_CHUNKS, -(-share // chunk)))


def layer_chunks(sites: list[Site], chunk: int) -> list[list[Site]]:
    """The window in passes of at most ``chunk`` sites, each as few layers as it can span."""
    ordered = sorted(sites, key=lambda s: (-1 if s.layer is None else s.layer, s.id))
    return [ordered[i : i + chunk] for i in range(0, len(ordered), chunk)]
