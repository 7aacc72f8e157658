"""What `run` shows while it runs: per model x mode the count, the rate and the ETA, at any
terminal width, and as plain lines when the output is not a terminal (a pipe, a CI log), where
a live display would print nothing until the end.

The rate counts from the moment a stratum's injections start in this run, so model loading,
golden runs and the results of earlier runs never dilute or inflate it; before that the line
says what is happening instead. A plain line is printed when it says something new: a phase
change, the end, or a new count at most every ``PLAIN_EVERY_S``; never the same line twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import click

from fi_campaign.engine.runner import INJECTING, PREPARING, Progress

if TYPE_CHECKING:
    from types import TracebackType

    from rich.console import Console, Group
    from rich.live import Live
    from rich.text import Text

PLAIN_EVERY_S = 5.0  # a plain line per stratum at most this often, besides phase changes and the end
BAR_MAX = 30
BAR_MIN = 8
PHASES = {PREPARING: "loading the model, computing golden outputs", INJECTING: "starting"}
WAITING_TEXT = "waiting for a worker"
RESUMING_TEXT = "resuming"  # injecting, no rate yet, the count so far from earlier runs
INJECTING_TEXT = "injecting"  # no rate yet, though this run has recorded some


@dataclass
class Pace:
    """One stratum's pace in this run: from its first injecting report to its latest one."""

    t0: float | None = None
    d0: int = 0
    last: Progress | None = None
    at: float = 0.0
    first_done: int | None = None  # the count at the first report: what earlier runs did

    def see(self, p: Progress, now: float) -> None:
        if self.first_done is None:
            self.first_done = p.done
        if p.phase == INJECTING and self.t0 is None:
            self.t0, self.d0 = now, p.done
        self.last, self.at = p, now

    def rate(self) -> float | None:
        p = self.last
        if self.t0 is None or p is None or p.done <= self.d0 or self.at <= self.t0:
            return None
        return (p.done - self.d0) / (self.at - self.t0)


def eta_text(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


@dataclass(frozen=True)
class Line:
    """The parts of a stratum's line, most important first: the head and count are never cut."""

    head: str
    count: str
    info: str
    outcomes: str
    fraction: float

    @classmethod
    def of(cls, pace: Pace) -> Line:
        p = pace.last
        assert p is not None  # a stratum has a pace only from its first report (Display.__call__)
        rate = pace.rate()
        if p.done >= p.planned:
            info = "done" + (f", {rate:,.0f} inj/s" if rate else "")
        elif p.phase != INJECTING:
            info = PHASES.get(p.phase, WAITING_TEXT)
        elif rate is None:
            earlier = pace.first_done if pace.first_done is not None else p.done
            info = INJECTING_TEXT if p.done > earlier else RESUMING_TEXT if p.done else PHASES[INJECTING]
        else:
            info = f"{rate:,.0f} inj/s, ETA {eta_text((p.planned - p.done) / rate)}"
        outcomes = " ".join(f"{k}={v}" for k, v in sorted(p.outcomes.items()))
        return cls(
            f"{p.model} {p.mode}", f"{p.done}/{p.planned}", info, outcomes, p.done / p.planned if p.planned else 1.0
        )

    def plain(self) -> str:
        return f"{self.head}: {self.count}, {self.info}" + (f", {self.outcomes}" if self.outcomes else "")

    def fitted(self, width: int) -> Text:
        """The line as rich Text in ``width`` columns: head, bar, count, info, outcomes. Head,
        count and info are never cut; the outcomes get the room they leave beside a short bar,
        and the bar grows into what is left."""
        from rich.text import Text

        room = width - (len(self.head) + len(self.count) + len(self.info) + 3) - 1
        bar = BAR_MIN if room >= BAR_MIN + 1 else 0
        room -= bar + 1 if bar else 0
        outcomes = (
            self.outcomes
            if len(self.outcomes) + 1 <= room
            else (self.outcomes[: room - 2] + "…" if room - 1 >= BAR_MIN else "")
        )
        room -= len(outcomes) + 1 if outcomes else 0
        bar += min(BAR_MAX - BAR_MIN, max(room, 0)) if bar else 0
        text = Text(self.head + " ", overflow="fold")
        if bar:
            done = int(round(self.fraction * bar))
            text.append("━" * done, "bar.finished" if self.fraction >= 1 else "bar.complete")
            text.append("━" * (bar - done) + " ", "bar.back")
        text.append(f"{self.count} ", "progress.download")
        text.append(self.info, "progress.remaining")
        if outcomes:
            text.append(" " + outcomes)
        return text


@dataclass
class Display:
    """Receives the runner's progress reports; a live bar per stratum on a terminal, plain
    lines otherwise."""

    console: Console
    paces: dict[tuple[str, str], Pace] = field(default_factory=dict)
    # per stratum: when its last plain line was printed, in which phase, the line, whether it said done
    printed: dict[tuple[str, str], tuple[float, str, str, bool]] = field(default_factory=dict)
    live: Live | None = None

    def __enter__(self) -> Display:
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(
                console=self.console,
                auto_refresh=True,
                refresh_per_second=4,
                get_renderable=self._render,
                transient=False,
            )
            self.live.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.live is not None:
            self.live.__exit__(exc_type, exc, tb)
            self.live = None

    def discard(self) -> None:
        """Forget every line, so an error is left alone on the screen."""
        self.paces.clear()
        if self.live is not None:
            self.live.refresh()

    def note(self, text: str) -> None:
        """A note on a line of its own: above the live bars while they are drawn (written past
        them, it would run on from the last bar's line), on stderr otherwise."""
        line = f"Note: {text}"
        if self.live is not None:
            self.live.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            click.echo(line, err=True)

    def __call__(self, p: Progress) -> None:
        key, now = (p.model, p.mode), time.monotonic()
        pace = self.paces.setdefault(key, Pace())
        pace.see(p, now)
        if self.live is None:
            self._plain(key, pace, now)

    def _plain(self, key: tuple[str, str], pace: Pace, now: float) -> None:
        text, p = Line.of(pace).plain(), pace.last
        assert p is not None  # Line.of has checked it
        finished = p.done >= p.planned
        when, phase, said, said_finished = self.printed.get(key, (None, None, None, False))
        if text == said or said_finished:
            return
        if when is None or phase != p.phase or finished or now - when >= PLAIN_EVERY_S:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)
            self.printed[key] = (now, p.phase, text, finished)

    def _render(self) -> Group:
        from rich.console import Group

        width = self.console.width
        return Group(*(Line.of(pace).fitted(width) for pace in self.paces.values()))
