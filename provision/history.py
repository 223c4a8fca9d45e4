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


# --- the chaos run's history (provision/chaos.py) ---------------------------------------------
#
# The writer logs each operation as `STAMP ok|failed|unknown OP PATH vN`: ok when
# ZooKeeper acknowledged it, failed when it surely did not happen, unknown when
# the connection broke before the answer (it may have happened). Only znodes
# whose every operation is ok are checked against the watchers.

@dataclass
class Op:
    when: datetime.datetime
    outcome: str   # ok, failed or unknown
    kind: str      # create, set or delete
    path: str
    version: int
    after: datetime.datetime = datetime.datetime.min   # the writer's ack before this one


def writer_ops(lines):
    """The writer's operations, and the paths whose every operation was ok."""
    ops = []
    for line in lines:
        words = message(line).split()
        if len(words) == 4 and words[0] in ("ok", "failed", "unknown") and words[3][:1] == "v":
            # The writer waits for each answer before it sends the next
            # request: this one was made after the last answer it logged.
            after = ops[-1].when if ops else datetime.datetime.min
            ops.append(Op(stamp(line), words[0], words[1], words[2], int(words[3][1:]), after))
    doubtful = {op.path for op in ops if op.outcome != "ok"}
    return ops, doubtful


def watch_window(lines):
    """When a watch.py run could be held to report changes: from its first
    line to the end of its log, or to when its session was lost (the caller
    cuts it short where its machine was halted under it)."""
    stamped = [(stamp(line), message(line)) for line in lines if line[:2] == "20"]
    start = next((when for when, said in stamped if said.startswith("watching ")), None)
    lost = next((when for when, said in stamped if said.startswith("session lost")), None)
    ends = [t for t in (lost, stamped[-1][0] if stamped else None) if t]
    return start, min(ends) if ends else None


# What watch.py adds to a delete when updates just before it may have gone unseen.
UNSEEN = "(updates just before it may be unseen)"


def lost_events(ops, doubtful, lines, window, slack=datetime.timedelta(seconds=3)):
    """The writer's acknowledged changes that one watch.py run never
    reported: [(op, why)]. A change counts when it was made inside the run's
    window (less `slack` at its end, the time a report may take). It is
    reported by a line about its znode: created or updated to its version or
    a later one (the later ones say how many they folded), deleted (with
    `missed while disconnected` when the updates before it were never seen,
    or `updates just before it may be unseen`, which covers the updates made
    before that delete), or `deleted before it could be read`.

    A znode created and deleted between two reads is named by no line: its
    create and delete are two of the N in a later `N child changes folded`,
    and its updates go with its create. Each such line covers at most N
    creates and deletes that may have been made before it: sent after the
    writer's previous answer, so a change the writer heard acknowledged a
    moment after the line may be one of them."""
    start, end = window
    if start is None:
        return []
    seen = {}
    folds = []   # [when, how many it can still cover] for each folded line
    for line in lines:
        if line[:2] != "20":
            continue
        when, said = stamp(line), message(line)
        if " child change" in said and "folded" in said:
            folds.append([when, int(said.split()[0])])
            continue
        words = said.split()
        if len(words) < 2 or not words[1].startswith("/"):
            continue
        path = words[1].rstrip(",")
        version = int(words[2][1:]) if len(words) > 2 and words[2][:1] == "v" \
            and words[2][1:].isdigit() else None
        seen.setdefault(path, []).append((when, words[0], version, said))
    deleted_at = {op.path: op.when for op in ops if op.kind == "delete"}
    unreported = []
    for op in ops:
        if op.path in doubtful or not start <= op.when <= end - slack:
            continue
        # Any report of the path will do, even one stamped a little before the
        # writer logged the acknowledgement: versions say what it covers.
        reports = seen.get(op.path, [])
        if op.kind == "create":
            ok = bool(reports)
        elif op.kind == "set":
            ok = any((v is not None and v >= op.version) or "deleted before it could be read" in s
                     or (verb == "deleted" and "missed while disconnected" in s)
                     or (s == f"deleted {op.path} {UNSEEN}" and op.path in deleted_at
                         and op.when <= deleted_at[op.path])
                     for _, verb, v, s in reports)
        else:
            ok = any(verb == "deleted" or "deleted before it could be read" in s
                     for _, verb, v, s in reports)
        if not ok:
            unreported.append(op)
    # The creates and deletes of znodes no line names, earliest possible
    # first, each to the first folded line that it may precede and that still
    # has room: a later change can use no line an earlier one could not, so
    # none is left out that another order would cover.
    folded = set()
    for op in sorted(unreported, key=lambda op: op.after):
        if op.kind != "set" and op.path not in seen:
            fold = next((f for f in folds if f[0] > op.after and f[1] > 0), None)
            if fold:
                fold[1] -= 1
                folded.add((op.kind, op.path))
    lost = [(op, f"{op.kind} {op.path} v{op.version} at {op.when} never reported")
            for op in unreported if (op.kind, op.path) not in folded
            and not (op.kind == "set" and ("create", op.path) in folded)]
    for path, reports in seen.items():
        versions = [v for _, _, v, _ in reports if v is not None]
        if versions != sorted(versions):
            lost.append((None, f"{path}: versions reported out of order: {versions}"))
    return lost
