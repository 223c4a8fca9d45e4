#!/usr/bin/env python3
"""What happened to the ensemble, drawn as one HTML page that works offline.

    timeline.py record [LOG ...]    ask every server its mode five times a second
                                    until Ctrl-C, then draw the page
    timeline.py draw [LOG ...]      draw the page again from what was recorded

The page has a lane per server (leading, following, electing, down, hanging,
cut off), a lane per elector (its leader terms as bars, and why each ended),
a lane of ticks per other log (watch.py's reports, say), and each fault as a
shaded band: the commands of local-cluster.py or lab.py (kill, pause, halt,
partition...) from when they began to when their repair ended. Two leader
terms that overlap are drawn red, with the overlap's length. Point at
anything for the exact log line.

LOG files are the scripts' output with their time stamps (create.py,
watch.py); the workers' logs of create-start.py are read without being
named. The servers' modes go to modes.log and the faults are read from
events.log, both in $ZKDEMO_STATE_DIR (the loopback ensemble's, default
.zkdemo/) or, with --lab, in the lab's state.
"""

import argparse
import datetime
import glob
import html
import importlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

from history import Term, message, overlaps, stamp
from zkensemble import REPO, Parser, UsageError, run_tool, stamp as now_stamp

LABEL_PX = 6.5   # the width of a character of a fault's label, at the page's font size
LABEL_ROWS = 3   # rows of fault labels above the lanes
STATES = {  # a server's state: its colour, and what the legend calls it
    "leading": ("#1b7f3b", "leading"), "following": ("#8fd18f", "following"),
    "electing": ("#f0a202", "electing (not serving)"), "down": ("#9e9e9e", "down"),
    "hanging": ("#8e44ad", "hanging (paused)"), "cut off": ("#8c510a", "cut off"),
}
MODE_STATE = {"leader": "leading", "standalone": "leading", "follower": "following",
              "not serving": "electing", "starting": "electing", "paused": "hanging",
              "down": "down", "halted": "down"}
# A fault, and the command that repairs it.
# What ends each fault. `local-cluster.py up` names no server: it starts every
# one that is not running, so it ends every kill and stop.
REPAIRS = {"kill": ("start", "up"), "stop": ("start", "up"), "pause": ("resume",),
           "freeze": ("thaw",),   # a client's process group (chaos.py): freeze zoo2 worker-3
           "halt": ("up",), "partition": ("heal",)}


# --- reading what was recorded ---------------------------------------------------------------

def read_lines(path):
    try:
        with open(path, errors="replace") as f:
            lines = [line.rstrip("\n") for line in f]
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}")
    stamped = []
    for line in lines:
        try:
            stamped.append((stamp(line), line))
        except ValueError:
            pass   # a line without a time stamp (a traceback, say)
    return stamped


def server_lanes(modes, faults, end):
    """{server: [(from, to, state, detail)]} from modes.log's lines
    (`STAMP zoo1 leader`): what each server answered, with `down` during a
    pause read as hanging and not serving during a cut as cut off."""
    changes = {}
    for when, line in modes:
        name, _, mode = message(line).partition(" ")
        changes.setdefault(name, []).append((when, mode))
    lanes = {}
    for name, seen in sorted(changes.items()):
        lane = []
        for (when, mode), following in zip(seen, seen[1:] + [(end, None)]):
            state = MODE_STATE.get(mode, "electing")
            for f in faults:
                if name in f.machines and f.start < following[0] and when < f.stop:
                    if f.verb == "pause" and state == "down":
                        state = "hanging"
                    elif f.verb == "partition" and len(f.machines) == 1 and state == "electing":
                        state = "cut off"
            lane.append((when, following[0], state, f"{name} {mode}"))
        lanes[name] = lane
    return lanes


class Fault(NamedTuple):
    start: datetime.datetime   # its command began
    stop: datetime.datetime    # the command that repairs it ended (or the run did)
    label: str                 # kill zoo2, cut zoo3 off, cut the zoo1-zoo3 link...
    verb: str                  # kill, pause, halt, partition, stop
    machines: list
    done: datetime.datetime    # its own command ended (None if it never did)


def fault_bands(events, end):
    """Each fault, from when its command began to when the command that
    repairs it ended (or the end); a command that failed is none."""
    open_faults = []
    for when, line in events:
        word, _, command = message(line).partition(" ")
        verb, *machines = command.split()
        if verb in REPAIRS and word == "begin":
            open_faults.append({"start": when, "stop": None, "verb": verb,
                                "machines": machines, "done": None})
        elif word == "failed" and verb in REPAIRS:
            open_faults = [f for f in open_faults if f["stop"] is not None
                           or (f["verb"], f["machines"]) != (verb, machines)]
        elif word == "end":
            for f in open_faults:
                if f["done"] is None and (f["verb"], f["machines"]) == (verb, machines):
                    f["done"] = when
                # A repair naming no machine (heal, local-cluster.py up) ends
                # every fault it repairs; lab.py's `up zooN` only a halt.
                elif f["stop"] is None and verb in REPAIRS[f["verb"]] and (
                        not machines or (set(machines) & set(f["machines"])
                                         and (verb != "up" or f["verb"] == "halt"))):
                    f["stop"] = when
    bands = []
    for f in open_faults:
        machines = f["machines"]
        if f["verb"] == "partition":
            label = (f"cut {machines[0]} off" if len(machines) == 1
                     else f"cut the {'-'.join(machines)} link")
        elif f["verb"] == "freeze":
            label = f"freeze {'/'.join(machines)}"
        else:
            label = f"{f['verb']} {' '.join(machines)}"
        bands.append(Fault(f["start"], f["stop"] or end, label, f["verb"], machines, f["done"]))
    return bands


def elector_terms(name, lines):
    """The leader terms in an elector's log. A worker's log holds many
    create.py runs one after another: a term a run never closed (it was
    killed) ends where the next run starts."""
    terms = []
    for when, line in lines:
        said = message(line)
        if said == "became leader":
            terms.append(Term(name, when))
        elif terms and terms[-1].end is None and said.startswith("no longer leader"):
            terms[-1].end, terms[-1].why = when, said[len("no longer leader"):].strip(" ()")
        elif terms and terms[-1].end is None and said.startswith("staying "):
            terms[-1].end, terms[-1].why = when, "its process ended without stepping down"
    return terms


# How long before the recording began a worker's line still counts as this
# run's (create-start.py may be started a moment before the recorder).
RUN_SLACK = datetime.timedelta(seconds=5)


def gather(state_dir, logs, run_dir=None):
    """Everything the page draws, from the files a run left. logs: paths,
    each lane named after its file, or {lane name: path}."""
    modes = read_lines(os.path.join(state_dir, "modes.log"))
    if not modes:
        raise UsageError(f"{state_dir}/modes.log has nothing: `timeline.py record` writes it")
    start, end = modes[0][0], modes[-1][0]
    events = [e for e in read_lines(os.path.join(state_dir, "events.log"))
              if e[0] >= start - datetime.timedelta(seconds=1)] \
        if os.path.exists(os.path.join(state_dir, "events.log")) else []
    named = dict(logs) if isinstance(logs, dict) else {
        os.path.splitext(os.path.basename(path))[0]: path for path in logs}
    found = sorted(p for p in glob.glob(os.path.join(run_dir, "worker-*.log"))
                   if not os.path.islink(p)) if run_dir else []
    named = {**{os.path.splitext(os.path.basename(p))[0]: p for p in found}, **named}
    electors, others = {}, {}
    for name, path in named.items():
        lines = read_lines(path)
        if path in found:
            # The workers' folder is shared by every run of create-start.py
            # (and every checkout): only what this run's workers wrote counts,
            # and a worker that wrote nothing in it gets no lane.
            lines = [(w, line) for w, line in lines if start - RUN_SLACK <= w <= end]
            if not lines:
                continue
        if any(message(line) == "became leader" or message(line).startswith("following ")
               for _, line in lines) or path in found:
            # Every term, also one begun before the first mode was recorded:
            # the checker must see them all; the drawing clips them.
            electors[name] = (elector_terms(name, lines), lines)
        else:
            others[name] = [(w, line) for w, line in lines if start <= w <= end]
    faults = fault_bands(events, end)
    terms = [t for ts, _ in electors.values() for t in ts]
    return {"start": start, "end": end, "servers": server_lanes(modes, faults, end),
            "faults": faults, "electors": electors, "others": others,
            "overlaps": overlaps(terms, end)}


# --- drawing ------------------------------------------------------------------------------------

LEFT, RIGHT, WIDTH = 130, 20, 1200
# Lines drawn red: a connection or session in trouble, a write that failed.
TROUBLE = re.compile(r"^(connection suspended|session lost|failed |unknown |lost the lock|"
                     r"REJECTED|write \d+: REJECTED)")
TEXT = 'font-family="sans-serif" font-size="12"'


def seconds(what, start):
    return (what - start).total_seconds()


def draw(data, title):
    """The page: a header, a legend and one SVG."""
    start, span = data["start"], max(seconds(data["end"], data["start"]), 1.0)
    scale = (WIDTH - LEFT - RIGHT) / span

    def x(when):
        return LEFT + max(0.0, min(span, seconds(when, start))) * scale

    def clock(when):
        return when.strftime("%H:%M:%S.%f")[:-3]

    rows, y = [], 40 + 14 * LABEL_ROWS
    for name, lane in data["servers"].items():
        rows.append(("server", name, lane, y))
        y += 28
    y += 12
    for name, (terms, lines) in data["electors"].items():
        rows.append(("elector", name, (terms, lines), y))
        y += 20
    for name, lines in data["others"].items():
        rows.append(("ticks", name, lines, y))
        y += 20
    height = y + 10
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
           f'width="{WIDTH}" height="{height}" {TEXT}>']
    # LABEL_ROWS rows above the lanes: each fault gets a strip with its label
    # in a row free at its start. A fault with no free row is drawn all the same,
    # its label left out (pointing at it names it): a label over another
    # could be read as neither.
    row_ends = [0.0] * LABEL_ROWS
    server_tops = {name: top for kind, name, _, top in rows if kind == "server"}
    lane_tops = {name: top for kind, name, _, top in rows}
    for start_, stop, label, verb, machines, _ in data["faults"]:
        left, right = x(start_), max(x(stop), x(start_) + 2)
        free = [r for r in range(LABEL_ROWS) if row_ends[r] <= left]
        row = free[0] if free else min(range(LABEL_ROWS), key=lambda r: row_ends[r])
        text = ""
        if free:
            row_ends[row] = left + 3 + LABEL_PX * len(label) + 6
            text = (f'<text class="fault-label" x="{left + 3:.1f}" y="{30 + 14 * row}" '
                    f'fill="#a02010">{html.escape(label)}</text>')
        row_ends[row] = max(row_ends[row], right)
        # Below the strip it shades only the lanes of the servers it hit, so
        # that faults at the same time on other servers stay apart; one
        # naming no server drawn here shades the page.
        tip = (f'<title>{html.escape(label)}: {clock(start_)} to {clock(stop)} '
               f'({seconds(stop, start_):.1f} s)</title>')
        frozen = "/".join(machines) if verb == "freeze" else None   # a client's lane
        hit = [lane_tops[frozen]] if frozen in lane_tops else \
            [server_tops[m] for m in machines if m in server_tops]
        spans = [(19 + 14 * row, 14)] + ([(top - 2, 24) for top in hit] if hit
                                         else [(33 + 14 * LABEL_ROWS,
                                                 height - 33 - 14 * LABEL_ROWS)])
        svg.append('<g class="fault">' + "".join(
            f'<rect x="{left:.1f}" y="{top}" width="{right - left:.1f}" height="{tall}" '
            f'fill="#d7301f" fill-opacity="0.12" stroke="#d7301f" stroke-opacity="0.4">'
            f'{tip}</rect>' for top, tall in spans) + f'{text}</g>')
    step = next(s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800) if span / s <= 12)
    for t in range(0, int(span) + 1, step):
        tx = LEFT + t * scale
        svg.append(f'<line x1="{tx:.1f}" y1="14" x2="{tx:.1f}" y2="{height}" stroke="#ddd"/>'
                   f'<text x="{tx:.1f}" y="11" text-anchor="middle" fill="#555">{t} s</text>')
    for kind, name, lane, top in rows:
        svg.append(f'<text x="{LEFT - 8}" y="{top + 13}" text-anchor="end">{html.escape(name)}</text>')
        if kind == "server":
            for start_, stop, state, detail in lane:
                svg.append(f'<rect class="state" data-state="{state}" x="{x(start_):.1f}" y="{top}" '
                           f'width="{max(x(stop) - x(start_), 1):.1f}" height="20" '
                           f'fill="{STATES[state][0]}"><title>{html.escape(detail)} '
                           f'({state}): {clock(start_)} to {clock(stop)}</title></rect>')
        elif kind == "elector":
            terms, lines = lane
            svg.append(f'<line x1="{LEFT}" y1="{top + 8}" x2="{WIDTH - RIGHT}" y2="{top + 8}" '
                       f'stroke="#ccc"/>')
            for term in terms:
                stop = term.end or data["end"]
                why = f"; stepped down: {term.why}" if term.why else "; still leading at the end"
                svg.append(f'<rect class="term" x="{x(term.start):.1f}" y="{top + 2}" '
                           f'width="{max(x(stop) - x(term.start), 2):.1f}" height="12" '
                           f'fill="#1b7f3b"><title>{html.escape(name)} led {clock(term.start)} '
                           f'to {clock(stop)} ({seconds(stop, term.start):.3f} s)'
                           f'{html.escape(why)}</title></rect>')
        else:
            for when, line in lane:
                colour = "#d7301f" if TROUBLE.search(message(line)) else "#3366cc"
                svg.append(f'<line class="tick" x1="{x(when):.1f}" y1="{top + 1}" '
                           f'x2="{x(when):.1f}" y2="{top + 15}" stroke="{colour}" stroke-width="2">'
                           f'<title>{html.escape(line)}</title></line>')
    tops = {name: top for kind, name, _, top in rows if kind == "elector"}
    for first, second, start_, stop in data["overlaps"]:
        length = seconds(stop, start_) * 1000
        for process in (first.process, second.process):
            svg.append(f'<rect class="overlap" x="{x(start_):.1f}" y="{tops[process] + 2}" '
                       f'width="{max(x(stop) - x(start_), 3):.1f}" height="12" fill="#e00000">'
                       f'<title>{html.escape(first.process)} and {html.escape(second.process)} '
                       f'both led for {length:.0f} ms from {clock(start_)}</title></rect>')
        svg.append(f'<text x="{x(start_):.1f}" y="{tops[second.process] - 1}" fill="#e00000">'
                   f'overlap {length:.0f} ms</text>')
    svg.append("</svg>")
    found = data["overlaps"]
    verdict = (f'<p class="verdict bad">{len(found)} overlap{"s" if len(found) > 1 else ""} '
               f'of two leaders, the longest '
               f'{max(seconds(o[3], o[2]) for o in found) * 1000:.0f} ms</p>' if found else
               '<p class="verdict good">No two electors led at once.</p>')
    drawn = {state for lane in data["servers"].values() for _, _, state, _ in lane}
    legend = " ".join(f'<span><i style="background:{colour}"></i>{text}</span>'
                      for state, (colour, text) in STATES.items() if state in drawn)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 16px; color: #222; }}
h1 {{ font-size: 18px; margin: 0 0 4px; }}
.verdict {{ font-weight: bold; margin: 4px 0; }} .good {{ color: #1b7f3b; }} .bad {{ color: #e00000; }}
.legend span {{ margin-right: 14px; font-size: 12px; }}
.legend i {{ display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -2px; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{clock(data["start"])} to {clock(data["end"])} UTC ({span:.0f} s). Shaded: a fault, from its
command to its repair. Green bars: an elector's leader terms. Blue ticks: log lines
(red: a connection suspended, a session lost, a write that failed). Point at anything
for its log line.</p>
{verdict}
<p class="legend">{legend} <span><i style="background:#e00000"></i>two leaders at once</span></p>
{"".join(svg)}
</body></html>
"""


# --- recording ------------------------------------------------------------------------------

def modes_now(lab):
    if lab:
        return {m.name: m.mode() for m in lab.machines()}
    cluster = importlib.import_module("local-cluster")
    return cluster.Ensemble(state_dir()).modes()


def state_dir():
    return os.environ.get("ZKDEMO_STATE_DIR") or os.path.join(REPO, ".zkdemo")


def workers_dir():
    """create-start.py's folder, when it is one the workers' logs can be
    trusted from: the user's own, closed to others, as create-start.py makes
    sure. /tmp is shared: a folder another user made could hold their logs."""
    path = os.environ.get("ZKDEMO_RUN_DIR") or os.path.join(tempfile.gettempdir(),
                                                            f"zkdemo-{os.getuid()}")
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022:
        return path
    print(f"timeline: the workers' logs in {path} are left out: that is not a folder "
          "of yours alone", file=sys.stderr)
    return None


def record(folder, lab, interval=0.2):
    """Append each server's mode to folder/modes.log when it changes, until
    SIGINT, SIGTERM or SIGHUP (run_tool takes each as Ctrl-C, also when
    started in the background)."""
    os.makedirs(folder, exist_ok=True)
    last = {}
    with open(os.path.join(folder, "modes.log"), "w") as out:
        try:
            while True:
                for name, mode in modes_now(lab).items():
                    if last.get(name) != mode:
                        out.write(f"{now_stamp()} {name} {mode}\n")
                        out.flush()
                        last[name] = mode
                time.sleep(interval)
        except KeyboardInterrupt:
            for name, mode in modes_now(lab).items():   # how the run ended
                out.write(f"{now_stamp()} {name} {mode}\n")


# --- the lock story (scripts/lock.py and store.py) -------------------------------------------------

class LockTerm(NamedTuple):
    holder: str                # its lane: "first holder (pid 8098)"
    start: datetime.datetime   # "holding the lock"
    end: datetime.datetime     # its last line about the lock: lost it, let go, or a write
    token: str                 # 0x... or "-" with --no-fencing
    why: str                   # how it ended, as it said


class StoreMark(NamedTuple):
    when: datetime.datetime
    holder: str
    verdict: str               # accepted, late (accepted inside a newer holder's term), rejected
    line: str                  # the store's line, without its stamp


def lock_story(holders, store_lines):
    """What the lock story's picture draws, from the logs of one telling:
    holders, {lane name: lock.py's stamped lines}, and store.py's lines.
    Each holder's term runs from `holding the lock` to the last line it
    printed about the lock; each write the store took or refused is a mark,
    `late` when it was accepted from a holder while a newer one held the
    lock (the overlap the token exists to stop)."""
    terms, pids = [], {}
    for name, lines in holders.items():
        start = token = None
        for line in lines:
            said = message(line)
            if found := re.search(r"pid (\d+): waiting for the lock", said):
                pids[found.group(1)] = name
            elif said.startswith("holding the lock"):
                start = terms_end = stamp(line)
                why = "still holding it at the end"
                found = re.search(r"fencing token (0x[0-9a-f]+)", said)
                token = found.group(1) if found else "-"
            elif start and (said.startswith(("lost the lock", "time is up")) or
                            re.match(r"write \d+: ", said)):
                terms_end, why = stamp(line), said
        if start:
            terms.append(LockTerm(name, start, terms_end, token, why))
    marks = []
    for line in store_lines:
        said = message(line)
        found = re.search(r"pid (\d+) write \d+$", said)
        if not found or found.group(1) not in pids:
            continue
        holder, when = pids[found.group(1)], stamp(line)
        verdict = "rejected" if said.startswith("REJECTED") else "accepted"
        newer = [t for t in terms if t.holder != holder and t.start <= when]
        mine = [t for t in terms if t.holder == holder and t.start <= when]
        if verdict == "accepted" and newer and mine and \
                max(t.start for t in newer) > max(t.start for t in mine):
            verdict = "late"
        marks.append(StoreMark(when, holder, verdict, said))
    return {"terms": sorted(terms, key=lambda t: t.start), "marks": marks}


MARKS = {"accepted": ("#3366cc", "a write the store accepted"),
         "late": ("#e6550d", "a late write the store accepted: the lock had passed on"),
         "rejected": ("#d7301f", "a late write the store refused: its token is lower")}


def draw_lock(panels, width=1000):
    """One SVG: a panel per telling, (title, lock_story(), frozen (from, to)),
    a lane per holder with its term as a bar and its freeze drawn over it, and
    the store's lane with a mark per write."""
    left, right, lane_h = 210, 20, 34
    out, y = [], 10

    times = [[t.start for t in story["terms"]] + [t.end for t in story["terms"]] +
             [m.when for m in story["marks"]] + list(frozen) for _, story, frozen in panels]
    # One scale for every panel, so that the tellings line up second for second.
    span = max(max((max(t) - min(t)).total_seconds(), 1.0) for t in times)
    scale = (width - left - right) / span
    for (title, story, frozen), when in zip(panels, times):
        first = min(when)

        def x(when):
            return left + (when - first).total_seconds() * scale
        out.append(f'<g class="panel" data-title="{html.escape(title)}">'
                   f'<text x="10" y="{y + 14}" font-weight="bold">{html.escape(title)}</text>')
        y += 36
        lanes = {}
        for term in story["terms"]:
            lanes.setdefault(term.holder, y + lane_h * len(lanes) + 4)
        store_top = y + lane_h * len(lanes) + 4
        for t in range(0, int(span) + 1, 5):
            out.append(f'<line x1="{left + t * scale:.1f}" y1="{y}" x2="{left + t * scale:.1f}" '
                       f'y2="{store_top + 18}" stroke="#e4e4e4"/>'
                       f'<text x="{left + t * scale:.1f}" y="{y - 4}" text-anchor="middle" '
                       f'font-size="10" fill="#777">{t} s</text>')
        for term in story["terms"]:
            top = lanes[term.holder]
            out.append(f'<text x="{left - 8}" y="{top + 12}" text-anchor="end">'
                       f'{html.escape(term.holder)}</text><text x="{left - 8}" y="{top + 25}" '
                       f'text-anchor="end" font-size="10" fill="#555">fencing token '
                       f'{term.token}</text>')
            out.append(f'<rect class="term" data-holder="{html.escape(term.holder)}" '
                       f'data-token="{term.token}" x="{x(term.start):.1f}" y="{top}" '
                       f'width="{max(x(term.end) - x(term.start), 2):.1f}" height="16" '
                       f'fill="#1b7f3b"><title>{html.escape(term.holder)} held the lock, '
                       f'token {term.token}, until: {html.escape(term.why)}</title></rect>')
        if frozen and story["terms"]:
            top = lanes[story["terms"][0].holder]
            out.append(f'<rect class="frozen" x="{x(frozen[0]):.1f}" y="{top}" '
                       f'width="{x(frozen[1]) - x(frozen[0]):.1f}" height="16" fill="#f3d9d3" '
                       f'stroke="#d7301f" stroke-dasharray="4 2"/>'
                       f'<text x="{x(frozen[0]) + 6:.1f}" y="{top + 12}" fill="#8c1d0e" '
                       f'font-size="11">frozen (kill -STOP ... kill -CONT): it still believes '
                       f'it holds the lock</text>')
        out.append(f'<text x="{left - 8}" y="{store_top + 12}" text-anchor="end">store.py</text>'
                   f'<line x1="{left}" y1="{store_top + 8}" x2="{width - right}" '
                   f'y2="{store_top + 8}" stroke="#ccc"/>')
        for mark in story["marks"]:
            colour = MARKS[mark.verdict][0]
            tall = 8 if mark.verdict == "accepted" else 13
            out.append(f'<line class="mark" data-verdict="{mark.verdict}" '
                       f'data-holder="{html.escape(mark.holder)}" x1="{x(mark.when):.1f}" '
                       f'y1="{store_top + 8 - tall}" x2="{x(mark.when):.1f}" '
                       f'y2="{store_top + 8 + tall}" stroke="{colour}" '
                       f'stroke-width="{2 if tall == 8 else 4}">'
                       f'<title>{html.escape(mark.line)}</title></line>')
            if mark.verdict != "accepted":
                label = ("the first holder's late write, accepted" if mark.verdict == "late" else
                         "REJECTED " + " < ".join(re.findall(r"0x[0-9a-f]+", mark.line)[:2]))
                out.append(f'<text x="{x(mark.when) + 6:.1f}" y="{store_top + 30}" '
                           f'fill="{colour}" font-size="11">{html.escape(label)}</text>')
        y = store_top + 52
        out.append('</g>')
    legend = [f'<rect x="14" y="{{y}}" width="12" height="12" fill="#1b7f3b"/>',
              f'<rect x="14" y="{{y}}" width="12" height="12" fill="#f3d9d3" stroke="#d7301f" '
              f'stroke-dasharray="3 2"/>']
    texts = ['a holder\'s term: from "holding the lock" to its last word on it',
             "frozen: the process does not run, and its session expires meanwhile"]
    for colour, text in MARKS.values():
        legend.append(f'<line x1="20" y1="{{y}}" x2="20" y2="{{y12}}" stroke="{colour}" '
                      f'stroke-width="3"/>')
        texts.append(text)
    for shape, text in zip(legend, texts):
        out.append(shape.format(y=y, y12=y + 12) +
                   f'<text x="34" y="{y + 11}">{html.escape(text)}</text>')
        y += 18
    y += 8
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {y}" width="{width}" '
            f'height="{y}" {TEXT}><rect width="100%" height="100%" fill="white"/>'
            + "".join(out) + "</svg>\n")


def render_png(page, png):
    """The page as a PNG, by Debian's headless Chromium (offline: no network
    features, a profile of its own)."""
    browser = shutil.which("chromium")
    if not browser:
        raise UsageError("--png needs chromium (apt-get install chromium)")
    height = 200 + int(re.search(r'<svg [^>]*height="(\d+)"', open(page).read()).group(1))
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [browser, "--headless", "--disable-gpu", "--no-first-run", "--disable-sync",
             "--disable-background-networking", "--disable-component-update",
             *(["--no-sandbox"] if os.geteuid() == 0 else []),
             f"--user-data-dir={profile}", f"--screenshot={os.path.abspath(png)}",
             f"--window-size={WIDTH + 40},{height}", "file://" + os.path.abspath(page)],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if result.returncode != 0 or not os.path.exists(png):
        raise UsageError(f"chromium could not draw {png}: {result.stderr.strip()[-300:]}")


def shown(path):
    """A path as a learner would type it: relative when under this folder."""
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else path


def main(argv=None):
    parser = Parser(prog="timeline.py", description=__doc__.split("\n\n")[0],
                    formatter_class=argparse.RawDescriptionHelpFormatter,
                    epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("command", choices=("record", "draw"), metavar="COMMAND",
                        help="record or draw")
    parser.add_argument("logs", nargs="*", metavar="LOG", help="the scripts' output, saved")
    parser.add_argument("--lab", action="store_true", help="the lab's machines (as root)")
    parser.add_argument("--out", metavar="FILE",
                        help="the page to write (default: timeline.html in the state dir)")
    parser.add_argument("--png", metavar="FILE", help="also a PNG of the page (needs chromium)")
    parser.add_argument("--title", default="What happened to the ensemble")
    args = parser.parse_args(argv)
    if args.lab and os.geteuid() != 0:
        parser.exit(1, "timeline.py: --lab needs root, as the lab does\n")
    lab = importlib.import_module("lab") if args.lab else None
    folder = lab.STATE if lab else state_dir()
    out = args.out or os.path.join(folder, "timeline.html")
    run_dir = workers_dir()
    for path in args.logs:
        if not os.path.isfile(path):
            raise UsageError(f"no such log: {path}")
    if args.command == "record":
        print(f"timeline: recording the servers' modes in {shown(folder)}/modes.log; "
              "Ctrl-C to stop and draw", flush=True)
        record(folder, lab)
    data = gather(folder, args.logs, run_dir)
    for path in args.logs:   # a log of another run would draw as an empty lane
        if not any(data["start"] <= when <= data["end"] for when, _ in read_lines(path)):
            raise UsageError(f"{path} has no line between {data['start']} and {data['end']} "
                             f"UTC, the run {shown(folder)}/modes.log recorded: record the run "
                             "you want drawn (timeline.py record) while it happens")
    page = draw(data, args.title)
    with open(out, "w") as f:
        f.write(page)
    print(f"timeline: {shown(out)}")
    if args.png:
        render_png(out, args.png)
        print(f"timeline: {shown(args.png)}")


if __name__ == "__main__":
    sys.exit(run_tool("timeline.py", main))
