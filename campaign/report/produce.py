"""`report`'s work: open every store, check every output before the first is written, build one
StoreReport per store and write the files asked for from them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from fi_campaign import outputs
from fi_campaign.errors import UserError
from fi_campaign.report import summary
from fi_campaign.report.fit import RawFit
from fi_campaign.report.summary import StoreReport


@dataclass(frozen=True)
class Files:
    """The output files `report` was asked for, as given (None: not asked for)."""

    csv: str | None = None
    json: str | None = None
    html: str | None = None
    critical: str | None = None

    def __bool__(self) -> bool:
        return any((self.csv, self.json, self.html, self.critical))


def produce(
    stores: list[str],
    files: Files,
    raw: RawFit | None,
    reference: str | None,
    force: bool,
    say: Callable[[str, bool], None],
) -> list[StoreReport]:
    """Nothing is written unless every store opens and every output may be written; ``say`` hears
    one sentence as each file is written, and the note of a store that is only read; its flag
    sends the sentence to stderr (a note, or a file that is a stream such as stdout)."""
    from fi_campaign.store import Store, parse_target

    targets = [parse_target(s) for s in stores]
    twice = [t for i, t in enumerate(targets) if t.key in [u.key for u in targets[:i]]]
    if twice:
        raise UserError(f"{twice[0].label} is given twice; name each store once.")
    paths = [t.path if t.path is not None else Path(t.name) for t in targets]
    beside = [t.path for t in targets if t.path is not None]
    opened = [Store.open(t) for t in targets]
    for store in opened:
        if (note := store.read_only_note()) is not None:
            say(note, True)
    chosen = {
        name: outputs.check(value, force, beside, folder=name == "html")
        for name, value in (
            ("csv", files.csv),
            ("json", files.json),
            ("html", files.html),
            ("critical", files.critical),
        )
        if value
    }
    if len({o.path for o in chosen.values()}) < len(chosen):
        raise UserError("--csv, --json, --critical-csv and --html name the same path; give each its own.")
    reports = [
        summary.build(s, label, reference) for s, label in zip(opened, summary.store_labels(paths), strict=False)
    ]
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if files.csv:
        summary.write_avf_csv(reports, chosen["csv"])
        say(f"Wrote {files.csv}", chosen["csv"].stream)
    if files.critical:
        summary.write_causes_csv(reports, chosen["critical"])
        say(f"Wrote {files.critical}", chosen["critical"].stream)
    if files.json:
        summary.write_json(summary.to_json(reports, raw, generated), chosen["json"])
        say(f"Wrote {files.json}", chosen["json"].stream)
    if files.html:
        from fi_campaign.report import html

        done = html.write(reports, chosen["html"], raw, generated)
        say(f"Wrote {Path(files.html) / done.page.name} and {len(done.files)} figure files beside it", False)
    return reports
