"""Which program an event belongs to: named explicitly (the event's id or source), else by the
programs' rules (notice, duration, availability window)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from gridflex.model.events import GridEvent
from gridflex.programs.model import Enrolment

SEPARATORS = ":/_-."


@dataclass(frozen=True)
class Match:
    program: str | None
    how: str  # the decision, in words, for the evidence


def names_program(event_id: str, source: str, name: str) -> bool:
    """An event names a program by its source, its id, or an id starting with the name and a separator."""
    return source == name or event_id == name or (event_id.startswith(name) and event_id[len(name)] in SEPARATORS)


def which_program(ev: GridEvent, source: str, known_from_s: float, enrolment: Enrolment) -> Match:
    """The program `ev` belongs to. Explicit names win (the longest, if several); by rules the
    event must give at least the program's notice, last no longer than its longest event and start
    inside an availability window; of several, the one with the longest notice the event satisfies."""
    named = [p for p in enrolment.programs if names_program(ev.id, source, p.name)]
    if named:
        p = max(named, key=lambda p: len(p.name))
        return Match(p.name, f"named: event id {ev.id!r} / source {source!r} names program {p.name!r}")
    notice_s = ev.start.timestamp() - known_from_s
    duration_s = (ev.end - ev.start).total_seconds()
    fits, why_not = [], []
    for p in enrolment.programs:
        local = datetime.fromtimestamp(ev.start.timestamp(), UTC).astimezone(p.tz)
        if notice_s < p.notice_s:
            why_not.append(f"{p.name}: notice {notice_s:.0f} s < {p.notice_s:.0f} s")
        elif duration_s > p.max_duration_s:
            why_not.append(f"{p.name}: duration {duration_s:.0f} s > {p.max_duration_s:.0f} s")
        elif not p.available(local):
            why_not.append(f"{p.name}: starts {local:%a %H:%M %Z}, outside its availability windows")
        else:
            fits.append(p)
    if not fits:
        return Match(None, "no program: " + ("; ".join(why_not) or "none enrolled"))
    best = max(fits, key=lambda p: p.notice_s)
    others = [p.name for p in fits if p is not best]
    how = (f"by rules: notice {notice_s:.0f} s >= {best.notice_s:.0f} s, duration {duration_s:.0f} s"
           f" <= {best.max_duration_s:.0f} s, inside an availability window")
    return Match(best.name, how + (f"; also fitted: {', '.join(others)}" if others else ""))
