"""What the scripts logged, read back and checked. The election checker: did
two create.py processes ever lead at once?

Each create.py prints timestamped `became leader` and `no longer leader` lines.
A process's *terms* run from one to the next. The checker fails when

- two terms of different processes overlap in time, or
- a process exited while its last term was still open (it never said
  `no longer leader`), or
- a process said `became leader` twice without stepping down between.

All processes run on this machine and stamp their lines from the same clock,
to the millisecond. A successor is woken only after its predecessor's znode is
deleted, which a leader does after printing `no longer leader`, so a handover
shows as end <= start; the same millisecond on both sides is not an overlap.
"""

import datetime
from dataclasses import dataclass


def stamp(line):
    """The time a line was printed: to the millisecond, or to the microsecond
    when the process ran with ZKDEMO_LOG_PRECISION=us (the bench does)."""
    return datetime.datetime.strptime(" ".join(line.split(" ", 2)[:2]), "%Y-%m-%d %H:%M:%S.%f")


def message(line):
    """A line without its time stamp."""
    parts = line.split(" ", 2)
    return parts[2] if len(parts) == 3 else ""


@dataclass
class Term:
    process: str
    start: datetime.datetime
    end: datetime.datetime = None   # None: still leading when the log ended
    why: str = ""                   # why it stepped down, as it said


class ElectionError(AssertionError):
    pass


def leading(lines):
    """True if the last word of these lines on leadership is `became leader`."""
    said = [message(line) for line in lines if message(line) == "became leader"
            or message(line).startswith("no longer leader")]
    return bool(said) and said[-1] == "became leader"


def terms_of(name, lines, exited):
    """The leadership terms in one process's output lines."""
    terms = []
    for line in lines:
        said = message(line)
        if said == "became leader":
            if terms and terms[-1].end is None:
                raise ElectionError(f"{name} became leader twice without stepping down "
                                    f"(at {stamp(line)})")
            terms.append(Term(name, stamp(line)))
        elif said.startswith("no longer leader"):
            if not terms or terms[-1].end is not None:
                raise ElectionError(f"{name}: 'no longer leader' without a term ({stamp(line)})")
            terms[-1].end = stamp(line)
            terms[-1].why = said[len("no longer leader"):].strip(" ()")
    if exited and terms and terms[-1].end is None:
        raise ElectionError(f"{name} exited while still claiming leadership "
                            f"(since {terms[-1].start})")
    return terms


def check(processes):
    """processes: iterable of (name, output lines, exited). Returns all terms,
    in order; raises ElectionError on overlap or on an exit while leading."""
    terms = []
    for name, lines, exited in processes:
        terms.extend(terms_of(name, lines, exited))
    terms.sort(key=lambda t: t.start)
    for before, after, _, _ in overlaps(terms)[:1]:
        raise ElectionError(f"overlap: {before.process} led from {before.start} to "
                            f"{before.end or 'the end'}, {after.process} from {after.start}")
    return terms


def overlaps(terms, end=None):
    """Every two terms of different processes that overlap, as (first,
    second, from, to); a term still open runs to `end`, or for ever."""
    never = datetime.datetime.max
    found = []
    ordered = sorted(terms, key=lambda t: t.start)
    for i, first in enumerate(ordered):
        first_end = first.end or end or never
        for second in ordered[i + 1:]:
            if second.start >= first_end:
                break
            if second.process != first.process:
                found.append((first, second, second.start,
                              min(first_end, second.end or end or never)))
    return found
