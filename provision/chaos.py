#!/usr/bin/env python3
"""A randomized fault run in the lab, checked over its whole history.

    chaos.py [--seed N] [--minutes M]     (make chaos SEED=N MINUTES=M)

On every lab machine two electors (create-start.py 2) and a watch.py run; on
zoo1 a writer creates, updates and deletes znodes under /zkdemo, four times a
second; a store.py runs on zoo3, and on zoo1 and zoo2 a lock.py takes the
lock /zkdemo-locks/chaos in turn and writes to it with its fencing token. A
nemesis picks faults at random, with random gaps: kill and restart a
server, pause and resume one, cut a machine off, cut one link, halt and
start a machine; half of them aim at the leader's machine. Each is healed
before the next; the same seed gives the same schedule. Beside it, every
15 to 30 s, a client is frozen (SIGSTOP) for longer than its session
timeout and let go (SIGCONT): the lock holder, or an elector, often the one
that leads.

At the end it heals everything, waits for the ensemble, stops what it
started, and checks the whole history:

  elections   no two electors led at once (an elector on a halted machine
              led until the halt; a frozen one until it was frozen, and it
              must step down as soon as it is let go)
  watches     every change the writer made was reported, in order or folded,
              by every watch.py while its session lived
  sessions    no session was lost unless its machine was cut off or halted,
              its process was frozen, or the ensemble had no quorum
  fencing     no write was accepted by the store with a token lower than one
              it had accepted before (and how many stale writes it refused)
  clocks      every log is stamped within the run: all in UTC
  zxid        every server ends at the same zxid
  processes   everything it started is gone

It prints the schedule and one line of figures, writes them to chaos.json,
and draws timeline.html, all in .zkdemo/chaos/ of the repository. It exits 1
when a check fails, naming it. The lab comes up if it is not up, and goes
down again at the end; a lab that was up stays up. Needs root, as the lab does.
"""

import argparse
import datetime
import glob
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

import history
import lab as lablib
import timeline
from zkensemble import (REPO, Parser, ToolError, UsageError, cleaning_up, own_group,
                        recorded, run_to_its_end, run_tool, wait_for)

MACHINES = ("zoo1", "zoo2", "zoo3")
HOSTS = "10.0.10.101,10.0.10.102,10.0.10.103"
# The run's logs and results; a lab other than the default (the tests') has its own.
RUN_NAME = "chaos" if lablib.LAB == "zkdemo" else f"chaos-{lablib.LAB}"
RUN = os.path.join(REPO, ".zkdemo", RUN_NAME)
INSIDE = f"/vagrant/.zkdemo/{RUN_NAME}"   # the same folder, seen from a machine
LAB_PY = os.path.join(REPO, "provision", "lab.py")
# The faults, how often each is picked, and the lab.py commands that make and heal them.
FAULTS = {"kill": 3, "pause": 2, "cut off": 2, "cut link": 2, "halt": 1}
SESSION_TIMEOUT = 10.0   # the scripts' (zkdemo.connect)
STORE, STORE_MACHINE = "10.0.10.103:7000", "zoo3"   # store.py
HOLDERS = ("zoo1", "zoo2")   # a lock.py on each, taking the lock in turn
# Seconds between freezes, and of each: past the 10 s session, which ZooKeeper
# expires 10 to 14 s after it last heard of it (tick 2 s), and past the new
# holder's first write, a second after it takes the lock: let go sooner, the
# frozen holder's late write reaches the store first, and is accepted.
FREEZE_GAP, FREEZE = (15, 30), (16, 20)


class ChaosError(ToolError):
    pass


def say(message):
    print(f"chaos: {message}", flush=True)


def lab(*args, check=True):
    result = subprocess.run([sys.executable, LAB_PY, *args], capture_output=True, text=True,
                            timeout=600, stdin=subprocess.DEVNULL,
                            process_group=own_group())
    if check and result.returncode != 0:
        raise ChaosError(f"lab.py {' '.join(args)}: {(result.stderr or result.stdout).strip()}")
    return result


# --- the schedule ---------------------------------------------------------------------------

def schedule(seed, count=200):
    """The faults in order, from the seed alone: (gap before it in s, kind,
    target, how long it lasts in s). A target is `leader` (the leader's
    machine when the fault begins) or a machine; a link is two."""
    rng = random.Random(seed)
    planned = []
    for _ in range(count):
        kind = rng.choices(list(FAULTS), weights=list(FAULTS.values()))[0]
        first = "leader" if rng.random() < 0.5 else rng.choice(MACHINES)
        second = rng.choice([m for m in MACHINES if m != first])
        target = [first, second] if kind == "cut link" else [first]
        planned.append((round(rng.uniform(2, 6), 1), kind, target,
                        round(rng.uniform(3, 8) + (6 if kind == "halt" else 0), 1)))
    return planned


# --- what runs on the machines ----------------------------------------------------------------

class Runs:
    """The watch.py, writer and electors of the run on each machine; the
    pids of the first two are kept in pids.json to find them after a crash."""

    def __init__(self):
        self.processes = {}   # name -> Popen
        self.count = {}
        self.frozen = {}      # process group -> its name, while it is frozen
        self.stopping = threading.Event()

    def start(self, machine, what, command):
        n = self.count[(machine, what)] = self.count.get((machine, what), 0) + 1
        log = f"{INSIDE}/{machine}/{what}-{n}.log"
        self.processes[f"{machine}/{what}-{n}"] = subprocess.Popen(
            [sys.executable, LAB_PY, "ssh", machine, "--", f"exec {command} >> {log} 2>&1"],
            stdin=subprocess.DEVNULL, start_new_session=True)
        self.save()

    def start_machine(self, machine):
        """A machine's watch.py and electors (and the writer on zoo1)."""
        # 0755 even under umask 0: create-start.py refuses a folder others can write
        os.makedirs(os.path.join(RUN, machine), mode=0o755, exist_ok=True)
        self.start(machine, "watch", f"python3 scripts/watch.py --hosts {HOSTS}")
        if machine == STORE_MACHINE:   # a new store forgets the highest token: a file each
            n = self.count.get((machine, "store"), 0) + 1
            self.start(machine, "store", f"python3 scripts/store.py --listen {STORE} "
                       f"--file {INSIDE}/{machine}/store-{n}.txt")
        if machine in HOLDERS:   # again and again: it exits when its time is up or it lost the lock
            self.start(machine, "holder", "sh -c 'while :; do python3 scripts/lock.py 8 --name "
                       f"chaos --store {STORE} --hosts {HOSTS}; sleep 1; done'")
        if machine == "zoo1":
            self.start(machine, "writer", f"python3 provision/chaos.py writer --hosts {HOSTS} "
                       f"--prefix /zkdemo/chaos-w{self.count.get((machine, 'writer'), 0) + 1}-")
        result = lab("ssh", machine, "--", f"ZKDEMO_RUN_DIR={INSIDE}/{machine} "
                     f"python3 scripts/create-start.py 2 --hosts {HOSTS}", check=False)
        if result.returncode != 0:
            say(f"{machine}: create-start.py failed: {result.stderr.strip()}")

    def clients(self, machine):
        """The clients on a machine that may be frozen: (name, process group,
        whether it holds the lock or leads, as its log last said)."""
        found = []
        for name, process in self.processes.items():
            if name.startswith(f"{machine}/holder-") and process.poll() is None:
                lines = read(os.path.join(RUN, f"{name}.log"))
                said = [history.message(l) for l in lines if "the lock" in l or ": accepted" in l]
                found.append((name, process.pid, bool(said) and not said[-1].startswith(
                    ("lost the lock", "time is up", "stopped waiting")) and
                    not said[-1].endswith("waiting for the lock /zkdemo-locks/chaos")))
        for path in sorted(glob.glob(os.path.join(RUN, machine, "workers", "*.json"))):
            try:
                with open(path) as f:
                    record = json.load(f)
                os.kill(record["pid"], 0)
            except (OSError, ValueError, KeyError):
                continue
            name = f"{machine}/{os.path.basename(record['log'])[:-4]}"
            found.append((name, record["pid"], history.leading(read(
                os.path.join(RUN, f"{name}.log")))))
        return found

    def freeze(self, name, group, length):
        """SIGSTOP the client's process group for `length` seconds, then SIGCONT."""
        machine, client = name.split("/")
        with recorded(lablib.STATE, f"freeze {machine} {client}"):
            os.killpg(group, signal.SIGSTOP)
            self.frozen[group] = name
        say(f"    freeze {name} for {length} s")
        self.stopping.wait(length)
        self.thaw(group)

    def thaw(self, group):
        name = self.frozen.pop(group, None)   # the freezer and stop() may both try
        if name is None:
            return
        machine, client = name.split("/")
        with recorded(lablib.STATE, f"thaw {machine} {client}"):
            try:
                os.killpg(group, signal.SIGCONT)
            except ProcessLookupError:
                pass   # its machine was halted meanwhile

    def save(self):
        with open(os.path.join(RUN, "pids.json"), "w") as f:
            json.dump({name: p.pid for name, p in self.processes.items()}, f)

    def stop(self):
        """The writer first, then the electors; watch.py last, once each has
        reported the writer's last change (or 15 s have passed)."""
        self.stopping.set()
        for group in list(self.frozen):
            self.thaw(group)
        self.end([n for n in self.processes if "/writer-" in n or "/holder-" in n])
        for machine in MACHINES:
            lab("ssh", machine, "--", f"ZKDEMO_RUN_DIR={INSIDE}/{machine} "
                "python3 scripts/create-stop.py", check=False)
        written = [op for path in logs_of("writer").values()
                   for op in history.writer_ops(read(path))[0] if op.outcome == "ok"]
        watching = [path for name, path in logs_of("watch").items()
                    if self.processes.get(name) and self.processes[name].poll() is None]
        if written:
            last = written[-1]
            told = f"deleted {last.path}" if last.kind == "delete" else f"{last.path} v{last.version}"
            wait_for(lambda: all(told in "".join(read(p)) for p in watching), 15, 0.2)
        self.end(list(self.processes))

    def end(self, names):
        end([self.processes[name] for name in names])


def end(processes, sig=signal.SIGTERM, grace=30):
    """Stop each process's group (it was started in a session of its own):
    `sig`, then SIGKILL to a group still there after `grace` seconds."""
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, sig)
    for process in processes:
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def leftovers():
    """Processes of a chaos run still alive: the recorded pids whose command
    line is still ours, and electors create-stop.py would find."""
    found = []
    try:
        with open(os.path.join(RUN, "pids.json")) as f:
            recorded = json.load(f)
    except (OSError, ValueError):
        recorded = {}
    for name, pid in recorded.items():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read()
        except OSError:
            continue
        if any(word in command for word in (b"watch.py", b"chaos.py", b"lab.py", b"lock.py",
                                            b"store.py")):
            found.append((name, pid))
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if f"ZKDEMO_RUN_DIR={INSIDE}/".encode() in f.read():
                    found.append(("elector", int(pid)))
        except OSError:
            pass
    return found


# --- the nemesis -------------------------------------------------------------------------------

def modes():
    return {m.name: m.mode() for m in lablib.machines()}


def healthy():
    now = modes()
    return sorted(now.values()) == ["follower", "follower", "leader"]


def leader_machine():
    return next((name for name, mode in modes().items() if mode == "leader"), None)


def inject(kind, target):
    """Make the fault; return the commands that heal it."""
    machines = [leader_machine() or "zoo1" if t == "leader" else t for t in target]
    if kind == "cut link" and machines[0] == machines[1]:
        machines[1] = next(m for m in MACHINES if m != machines[0])
    if kind == "kill":
        lab("kill", machines[0])
        return machines, [("start", machines[0])]
    if kind == "pause":
        lab("pause", machines[0])
        return machines, [("resume", machines[0])]
    if kind in ("cut off", "cut link"):
        lab("partition", *machines)
        return machines, [("heal",)]
    lab("halt", machines[0])
    return machines, [("up", machines[0])]


def heal(commands, runs):
    for command in commands:
        lab(*command)
        if command[0] == "up":
            runs.start_machine(command[1])


def heal_all(runs, only=None):
    """Every cut mended, every server running, every machine up (with its
    electors and watch.py again, when `runs` is given); of the machines not
    up, only those named in `only`, when it is given."""
    lab("heal", check=False)
    for machine in lablib.machines():
        if only is not None and machine.name not in only:
            continue
        if not machine.is_up():
            if runs:
                heal([("up", machine.name)], runs)
            else:
                lab("up", machine.name, check=False)
        elif machine.mode() == "down":   # paused, or killed
            lab("resume", machine.name, check=False)
            lab("start", machine.name, check=False)


def nemesis(planned, minutes, runs):
    """Run the schedule until the time is up; the faults done, as run."""
    done = []
    deadline = time.monotonic() + minutes * 60
    for n, (gap, kind, target, length) in enumerate(planned, 1):
        if time.monotonic() + gap + length > deadline:
            break
        time.sleep(gap)   # the schedule's gap: part of the experiment, not a wait for a state
        if not wait_for(healthy, 90, 0.5):
            raise ChaosError(f"the ensemble did not recover before fault {n}: {modes()}")
        machines, repairs = inject(kind, target)
        say(f"{n:3} {kind} {' '.join(machines)} for {length} s")
        time.sleep(length)
        heal(repairs, runs)
        done.append({"n": n, "kind": kind, "target": target, "machines": machines,
                     "length": length})
    return done


def holding(clients):
    """The lock holders among the clients that hold the lock and whose last
    write the store accepted (the store is up: let go, they will write late)."""
    return [c for c in clients if c[2] and "/holder-" in c[0] and
            re.fullmatch(r"write \d+: accepted",
                         history.message((read(os.path.join(RUN, f"{c[0]}.log")) or [""])[-1]))]


def freezer(seed, deadline, runs, freezes):
    """Beside the nemesis, every 15 to 30 s: a client frozen past its session
    timeout and let go, half the time one that holds the lock or leads (the
    first time, the lock's holder, waited for a while if none holds it: so
    a run shows a late write)."""
    rng = random.Random(f"freeze {seed}")
    first = True
    while True:
        gap, length = rng.uniform(*FREEZE_GAP), round(rng.uniform(*FREEZE), 1)
        busy, machine, pick = rng.random() < 0.5, rng.choice(MACHINES), rng.random()
        if runs.stopping.wait(gap) or time.monotonic() + length > deadline:
            return
        found = [client for m in MACHINES for client in runs.clients(m)]
        # The first time, wait a while for a holder that holds and writes (a
        # fault may have sent them all back to waiting, or stopped the store).
        until = time.monotonic() + FREEZE_GAP[1]
        while first and not holding(found) and time.monotonic() < until:
            if runs.stopping.wait(0.5):
                return
            found = [client for m in MACHINES for client in runs.clients(m)]
        if time.monotonic() + length > deadline:
            return
        chosen = [c for c in found if c[2]] if busy else \
            [c for c in found if c[0].startswith(f"{machine}/")]
        if first:
            chosen = holding(found) or chosen
        chosen = chosen or found
        if not chosen:
            continue
        name, group, _ = chosen[int(pick * len(chosen))]
        try:
            runs.freeze(name, group, length)
        except ProcessLookupError:
            continue   # it had just ended
        first = False
        freezes.append({"kind": "freeze", "target": [name], "machines": [name.split("/")[0]],
                        "length": length})


# --- the checks and figures ---------------------------------------------------------------------

def read(path):
    try:
        with open(path, errors="replace") as f:
            return [line.rstrip("\n") for line in f]
    except OSError:
        return []


def logs_of(kind):
    found = {}
    for machine in MACHINES:
        folder = os.path.join(RUN, machine)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            if name.startswith(kind) and name.endswith(".log"):
                found[f"{machine}/{name[:-4]}"] = os.path.join(folder, name)
    return found


def halts_of(machine, bands):
    """When each halt of the machine began and when its command ended: its
    processes were killed in between."""
    return [(f.start, f.done) for f in bands if f.verb == "halt" and machine in f.machines
            and f.done]


def check_elections(data, let_go=datetime.timedelta(seconds=2)):
    """The electors' terms as the timeline read them, but a term still open
    when its machine was halted ends with the halt, and one open when its
    process was frozen ends with the freeze: a frozen process does nothing.
    Let go, its lease has run out, and it must say so within `let_go`
    (those that do not are returned). Then the overlaps."""
    terms, kept = [], []
    for name, (lane, _) in data["electors"].items():
        for term in lane:
            for f in data["faults"]:
                if f.verb == "freeze" and "/".join(f.machines) == name and \
                        term.start <= f.start and (term.end is None or term.end > f.start):
                    if term.end is None or term.end > f.stop + let_go:
                        kept.append(f"{name} led on after it was let go at {f.stop}")
                    term.end, term.why = f.start, "frozen"
            killed = term.end is None or term.why == "its process ended without stepping down"
            for start, stop in halts_of(name.split("/")[0], data["faults"]):
                if killed and term.start <= stop and (term.end is None or term.end > stop):
                    term.end, term.why = stop, "killed when its machine was halted"
            terms.append(term)
    data["overlaps"] = history.overlaps(terms, data["end"])
    return terms, data["overlaps"], kept


def check_watches(bands):
    ops, doubtful = [], set()
    for path in logs_of("writer").values():
        found, unsure = history.writer_ops(read(path))
        ops += found
        doubtful |= unsure
    lost, watched = [], 0
    for name, path in logs_of("watch").items():
        lines = read(path)
        machine = name.split("/")[0]
        window = history.watch_window(lines)
        for start, _ in halts_of(machine, bands):
            if window[0] and window[0] <= start <= window[1]:
                window = (window[0], start)
        watched += 1
        lost += [(name, why) for _, why in history.lost_events(ops, doubtful, lines, window)]
    return ops, doubtful, watched, lost


def quorum_at(mode_lines):
    """[(time, has a serving quorum)] from the recorder's modes.log."""
    now, points = {}, []
    for line in mode_lines:
        name, _, mode = history.message(line).partition(" ")
        now[name] = mode
        serving = [m for m in now.values() if m in ("leader", "follower")]
        when = history.stamp(line)
        if points and points[-1][0] == when:
            points.pop()   # lines of one poll: the state after all of them
        points.append((when, "leader" in serving and len(serving) >= 2))
    return points


def leader_at(mode_lines, when):
    """The machine whose server said it led at `when`, by modes.log (None if none)."""
    now = {}
    for line in mode_lines:
        if history.stamp(line) > when:
            break
        name, _, mode = history.message(line).partition(" ")
        now[name] = mode
    return next((name for name, mode in now.items() if mode == "leader"), None)


def check_sessions(bands, quorum, mode_lines=()):
    """A session may be lost only where ZooKeeper allows it: its client's
    machine cut off or halted, no serving quorum, or the leader's machine cut
    off or paused. That leader still takes itself for the leader, and its
    followers for theirs, until syncLimit runs out: no other server can
    renew a session meanwhile (a follower asks the leader), and the leader
    expires the sessions it no longer hears from, which commits on the heal.
    modes.log cannot show this: it asks each machine from inside."""
    unexcused = []
    margin = datetime.timedelta(seconds=SESSION_TIMEOUT + 5)
    leaderless = [f for f in bands if f.verb in ("partition", "pause") and len(f.machines) == 1
                  and leader_at(mode_lines, f.start) in f.machines]
    for kind in ("watch", "worker", "writer", "holder"):
        for name, path in logs_of(kind).items():
            machine = name.split("/")[0]
            frozen = [f for f in bands if f.verb == "freeze" and "/".join(f.machines) == name]
            for line in read(path):
                if "session lost" not in line or line[:2] != "20":
                    continue
                when = history.stamp(line)
                isolated = any(f.start - margin <= when <= f.stop + margin
                               and machine in f.machines and f.verb in ("halt", "partition")
                               for f in bands) or \
                    any(f.start - margin <= when <= f.stop + margin for f in frozen)
                no_quorum = any(not ok for t, ok in quorum if when - margin <= t <= when) or \
                    any(f.start - margin <= when <= f.stop + margin for f in leaderless)
                if not (isolated or no_quorum):
                    unexcused.append(f"{name}: {history.message(line)} at {when}")
    return unexcused


def check_fencing():
    """The stores' files of accepted writes, each in its order: no token
    lower than one accepted before it (a store that starts again forgets
    the highest token, as store.py says: each start has a file of its own).
    Returns the tokened writes accepted, the stale ones refused, and what is
    wrong."""
    accepted, wrong = 0, []
    for path in sorted(glob.glob(os.path.join(RUN, STORE_MACHINE, "store-*.txt"))):
        highest = None
        for line in read(path):
            words = line.split()
            if len(words) < 4 or words[2] != "token" or words[3] == "-":
                continue
            token = int(words[3], 16)
            accepted += 1
            if highest is not None and token < highest:
                wrong.append(f"{os.path.basename(path)}: token {words[3]} accepted after "
                             f"0x{highest:x} ({' '.join(words[4:])}, at {words[0]} {words[1]})")
            highest = token if highest is None else max(highest, token)
    refused = sum(history.message(line).startswith("REJECTED ")
                  for path in logs_of("store").values() for line in read(path))
    return accepted, refused, wrong


def check_clocks(mode_lines, logs, slack=datetime.timedelta(minutes=5)):
    """Every log's stamps lie within the run, as the recorder's modes.log
    spans it. Every process stamps in UTC; a log stamped in another zone
    (30 minutes or more off) would line its events up with the wrong faults,
    and could fail the run or hide a failure."""
    spans = [history.stamp(line) for line in mode_lines if line[:2] == "20"]
    if not spans:
        return []
    first, last = min(spans), max(spans)
    wrong = []
    for name, path in logs.items():
        when = next((history.stamp(line) for line in read(path) if line[:2] == "20"
                     and not first - slack <= history.stamp(line) <= last + slack), None)
        if when:
            wrong.append(f"{name} is stamped {when}, outside the run ({first} to {last}): "
                         "a clock or time zone other than UTC?")
    return wrong


def recovery(bands, quorum, terms, writes=()):
    """For each fault: seconds from its start until the ensemble served a
    quorum again, and until an elector led again, after the first time
    either stopped while the fault lasted (0 when it never stopped)."""
    changes = sorted({t.start for t in terms} | {t.end for t in terms if t.end})
    leaders = [(t, any(x.start <= t and (x.end is None or x.end > t) for x in terms))
               for t in changes]
    rows = []
    for start, end, label, verb, names, _ in bands:
        if verb == "freeze":
            continue   # a client's, not the servers': the nemesis's faults are measured
        kind = verb if verb != "partition" else "cut off" if len(names) == 1 else "cut link"
        row = {"fault": label, "kind": kind}
        for key, points in (("to_quorum", quorum), ("to_leader", leaders)):
            stopped = next((t for t, ok in points if start <= t <= end and not ok), None)
            back = next((t for t, ok in points if stopped and t > stopped and ok), None)
            row[key] = round((back - start).total_seconds(), 3) if back else 0.0
        # The longest the writer waited for an acknowledgement during the fault:
        # what clients felt, whatever the servers said of themselves.
        gaps = [(b - a).total_seconds() for a, b in zip(writes, writes[1:])
                if b >= start and a <= end]
        row["writes_stalled"] = round(max(gaps, default=0.0), 3)
        rows.append(row)
    return rows


def figures_of(rows):
    by_kind = {}
    for row in rows:
        by_kind.setdefault(row["kind"], []).append(row)
    return {kind: {"count": len(found),
                   "to_quorum_p50": statistics.median(r["to_quorum"] for r in found),
                   "to_quorum_max": max(r["to_quorum"] for r in found),
                   "to_leader_p50": statistics.median(r["to_leader"] for r in found),
                   "to_leader_max": max(r["to_leader"] for r in found),
                   "writes_stalled_p50": statistics.median(r["writes_stalled"] for r in found),
                   "writes_stalled_max": max(r["writes_stalled"] for r in found)}
            for kind, found in sorted(by_kind.items())}


def zxids():
    return {m.name: (m.srvr() or {}).get("Zxid") for m in lablib.machines()}


# --- the run -------------------------------------------------------------------------------------

def run(seed, minutes):
    planned = schedule(seed)
    say(f"seed {seed}, {minutes:g} minute{'s' if minutes != 1 else ''}; the schedule starts: " +
        ", ".join(f"{k} {'-'.join(t)}" for _, k, t, _ in planned[:6]) + ", ...")
    was_up = [m.name for m in lablib.machines() if m.is_up()]
    left = leftovers()
    if left:
        raise ChaosError(f"a process of an earlier chaos run still runs ({left[0][0]}); "
                         "stop it, or run `lab.py halt` on its machine")
    runs, recorder, result = Runs(), None, {}
    started = time.monotonic()
    # From here on, whatever stops the run (a failure, Ctrl-C, SIGTERM or
    # SIGHUP, even while the lab is still coming up) passes through the
    # clean-up below, which nothing interrupts.
    try:
        if len(was_up) < len(MACHINES):
            say("bringing the lab up (lab.py up)")
            if run_to_its_end([sys.executable, LAB_PY, "up"], stdin=subprocess.DEVNULL).returncode:
                raise ChaosError("lab.py up failed (its lines above say why)")
        if not wait_for(healthy, 90, 0.5):
            raise ChaosError(f"the lab's ensemble does not serve: {modes()}")
        shutil.rmtree(RUN, ignore_errors=True)
        os.makedirs(RUN, mode=0o755)
        result["logs"] = RUN   # from here on, the lab's logs are this run's to keep
        recorded = os.path.join(lablib.STATE, "modes.log")
        if os.path.exists(recorded):
            os.remove(recorded)   # an earlier run's
        recorder = subprocess.Popen([sys.executable, os.path.join(REPO, "provision", "timeline.py"),
                                     "record", "--lab"], stdout=subprocess.DEVNULL,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        if not wait_for(lambda: len(read(recorded)) >= len(MACHINES), 30, 0.2):
            raise ChaosError("timeline.py record noted no modes within 30 s")
        for machine in sorted(MACHINES, key=lambda m: m != STORE_MACHINE):   # the store first
            runs.start_machine(machine)
        say("electors, watch.py, the writer, the store and the lock holders run; "
            "the nemesis begins")
        freezes = result["freezes"] = []
        freezing = threading.Thread(target=freezer, daemon=True,
                                    args=(seed, time.monotonic() + minutes * 60, runs, freezes))
        freezing.start()
        done = nemesis(planned, minutes, runs)
        runs.stopping.set()
        freezing.join()
        say("healing everything")
        heal_all(runs)
        if not wait_for(healthy, 120, 0.5):
            raise ChaosError(f"the ensemble did not recover after the run: {modes()}")
        say("stopping the writer, the electors and watch.py")
        runs.stop()
        # Nothing writes now: every server should come to the same last zxid.
        wait_for(lambda: len(set(zxids().values())) == 1, 30, 0.5)
        result["zxids"] = zxids()
    except BaseException:
        # Interrupted, or failed, with a fault perhaps still in place: undo
        # it, so that a lab that stays up is left working.
        if was_up:
            with cleaning_up():
                say("stopped early: healing the lab")
                heal_all(None, only=was_up)
        raise
    finally:
        with cleaning_up():
            stop_run(runs, recorder, result, was_up)
    return done, result, time.monotonic() - started


def stop_run(runs, recorder, result, was_up):
    """Stop what the run started, keep the lab's logs, and leave the lab as
    the run found it."""
    if runs.processes:
        runs.stop()
    if recorder:
        end([recorder], signal.SIGINT, 60)   # Ctrl-C: it notes the last modes
    if result.get("logs"):   # not an earlier run's folder
        for name in ("modes.log", "events.log"):
            if os.path.exists(os.path.join(lablib.STATE, name)):
                shutil.copy(os.path.join(lablib.STATE, name), RUN)
    result["left"] = leftovers()
    if not was_up:
        say("taking the lab down again (it was not up)")
        lab("down", check=False)
    elif len(was_up) < len(MACHINES):
        halted = [m for m in MACHINES if m not in was_up]
        say(f"halting {' '.join(halted)} again (they were not up)")
        lab("halt", *halted, check=False)


def analyse(seed, minutes, done, result, took):
    """The checks over the whole history, the figures, chaos.json and the timeline."""
    mode_lines = read(os.path.join(RUN, "modes.log"))
    clients = {**logs_of("worker"), **logs_of("watch"), **logs_of("writer"),
               **logs_of("holder"), **logs_of("store")}
    data = timeline.gather(RUN, clients)
    bands = data["faults"]
    quorum = quorum_at(mode_lines)
    terms, overlapping, kept = check_elections(data)
    fenced, refused, unfenced = check_fencing()
    ops, doubtful, watched, lost = check_watches(bands)
    sessions = check_sessions(bands, quorum, mode_lines)
    clocks = check_clocks(mode_lines, clients)
    rows = recovery(bands, quorum, terms, sorted(o.when for o in ops if o.outcome == "ok"))
    zxid = result.get("zxids", {})
    failures = []
    if overlapping:
        failures.append("elections: " + "; ".join(
            f"{a.process} and {b.process} both led for "
            f"{(to - since).total_seconds() * 1000:.0f} ms from {since}"
            for a, b, since, to in overlapping[:3]))
    if kept:
        failures.append("elections: " + "; ".join(kept[:3]))
    if lost:
        failures.append(f"watches: {len(lost)} changes never reported: " +
                        "; ".join(f"{name}: {why}" for name, why in lost[:3]))
    if sessions:
        failures.append("sessions: " + "; ".join(sessions[:3]))
    if clocks:
        failures.append("clocks: " + "; ".join(clocks[:3]))
    if unfenced:
        failures.append(f"fencing: {len(unfenced)} writes accepted with a token lower than one "
                        "accepted before: " + "; ".join(unfenced[:3]))
    if len(set(zxid.values())) != 1 or None in zxid.values():
        failures.append(f"zxid: the servers end at {zxid}")
    if result.get("left"):
        failures.append(f"processes: still running: {result['left']}")
    kinds = {}
    for fault in done + result.get("freezes", []):
        kinds[fault["kind"]] = kinds.get(fault["kind"], 0) + 1
    figures = {"seed": seed, "minutes": minutes, "took_s": round(took, 1),
               "faults": kinds, "leadership_changes": len(terms),
               "overlaps": len(overlapping), "writes_ok": sum(o.outcome == "ok" for o in ops),
               "writes_unsure": len(doubtful), "watchers": watched, "events_lost": len(lost),
               "sessions_lost_with_quorum": len(sessions), "zxids": zxid,
               "fenced_writes": fenced, "stale_writes_refused": refused,
               "stale_writes_accepted": len(unfenced),
               "recovery": figures_of(rows), "failures": failures,
               "schedule": done, "freezes": result.get("freezes", [])}
    with open(os.path.join(RUN, "chaos.json"), "w") as f:
        json.dump(figures, f, indent=1, default=str)
    page = timeline.draw(data, f"make chaos SEED={seed} MINUTES={minutes:g}")
    with open(os.path.join(RUN, "timeline.html"), "w") as f:
        f.write(page)
    return figures


def summary(figures):
    faults = " ".join(f"{k} {n}" for k, n in sorted(figures["faults"].items())) or "none"
    recovery = "; ".join(f"{k} quorum {r['to_quorum_p50']:.1f}/{r['to_quorum_max']:.1f} s, "
                         f"leader {r['to_leader_p50']:.1f}/{r['to_leader_max']:.1f} s, writes "
                         f"stalled {r['writes_stalled_p50']:.1f}/{r['writes_stalled_max']:.1f} s"
                         for k, r in figures["recovery"].items())
    return (f"faults: {faults}; leadership changes {figures['leadership_changes']}; "
            f"overlaps {figures['overlaps']}; writes {figures['writes_ok']} "
            f"({figures['writes_unsure']} znodes unsure); events lost {figures['events_lost']} "
            f"over {figures['watchers']} watch.py runs; fencing: tokened writes accepted "
            f"{figures['fenced_writes']}, stale writes refused {figures['stale_writes_refused']}, "
            f"stale writes accepted {figures['stale_writes_accepted']}; "
            f"recovery p50/max: {recovery}")


# --- the writer (runs on zoo1) -----------------------------------------------------------------

def writer(argv):
    """Create a znode, update it twice, delete it, and again, four
    operations a second; log each with its outcome."""
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    from zkdemo import CONNECTION_ERRORS, connect, disconnect, log
    from kazoo.exceptions import KazooException
    parser = argparse.ArgumentParser(prog="chaos.py writer")
    parser.add_argument("--hosts", required=True)
    parser.add_argument("--prefix", required=True)
    args = parser.parse_args(argv)
    args.timeout, args.source = 30.0, None
    zk = connect(args)
    zk.ensure_path("/zkdemo")
    n, step, path, unsure = 0, 0, None, []
    try:
        while True:
            if step == 0:
                n += 1
                path = f"{args.prefix}{n:04}"
            kind, version = ("create", 0) if step == 0 else ("delete", 2) if step == 3 \
                else ("set", step)
            try:
                if kind == "create":
                    zk.create(path, b"v0")
                elif kind == "set":
                    zk.set(path, f"v{version}".encode(), version=version - 1)
                else:
                    zk.delete(path, version=2)
                log(f"ok {kind} {path} v{version}")
                step = (step + 1) % 4
            except CONNECTION_ERRORS:
                log(f"unknown {kind} {path} v{version}")
                unsure.append(path)
                step = 0   # a new znode: this one's state is unsure
            except KazooException as e:
                log(f"failed {kind} {path} v{version} ({type(e).__name__})")
                unsure.append(path)
                step = 0
            time.sleep(0.25)   # the writer's steady rate
    except KeyboardInterrupt:
        # Leave nothing behind: the znode in hand, and any whose state was unsure.
        for left in dict.fromkeys(unsure + ([path] if step else [])):
            try:
                stat = zk.exists(left)
                if stat:
                    zk.delete(left)
                    log(f"ok delete {left} v{stat.version}")
            except KazooException as e:
                log(f"failed delete {left} v0 ({type(e).__name__})")
        disconnect(zk)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["writer"]:
        return writer(argv[1:])
    parser = Parser(prog="chaos.py", description=__doc__.split("\n\n")[0],
                    formatter_class=argparse.RawDescriptionHelpFormatter,
                    epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--seed", type=int, help="the schedule's seed (default: a random one)")
    parser.add_argument("--minutes", type=float, default=2.0,
                        help="how long the nemesis runs (default 2)")
    parser.add_argument("--png", metavar="FILE",
                        help="also draw the timeline as a PNG (needs chromium)")
    args = parser.parse_args(argv)
    if not 0.2 <= args.minutes <= 600:
        parser.error("--minutes: from 0.2 to 600")
    seed = args.seed if args.seed is not None else random.randrange(1, 10**6)
    if os.geteuid() != 0:
        raise ChaosError("needs root, as the lab does: sudo make chaos")
    done, result, took = run(seed, args.minutes)
    figures = analyse(seed, args.minutes, done, result, took)
    say("schedule: " + ", ".join(f"{f['kind']} {'-'.join(f['machines'])} {f['length']} s"
                                 for f in figures["schedule"]))
    say(summary(figures))
    say(f"figures: {timeline.shown(RUN)}/chaos.json   timeline: {timeline.shown(RUN)}/timeline.html")
    if args.png:
        try:
            timeline.render_png(os.path.join(RUN, "timeline.html"), args.png)
        except UsageError as e:
            print(f"chaos.py: {e}", file=sys.stderr)
    for failure in figures["failures"]:
        print(f"chaos.py: check failed: {failure}", file=sys.stderr)
    if figures["failures"]:
        return 1
    say("every check passed: elections, watches, sessions, clocks, zxid, fencing, processes")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool("chaos.py", main))
