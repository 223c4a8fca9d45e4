#!/usr/bin/env python3
"""`make bench`: election failover, lock handover, watch latency, cold start and scale.

It brings up a loopback ensemble of its own (127.0.80.101-103, tick 200 ms,
state in .zkdemo/bench), measures, prints a table and writes JSON to
$BENCH_JSON (default .zkdemo/bench.json). $BENCH_ONLY (failover,
failover_scaling, lock_handover, crash_failover, watch, cold_start, scale, workers,
reconnect, lab, vms; comma separated) runs only those steps. Every time comes from the measured
processes' own timestamped lines (the same clock, to the microsecond, with
ZKDEMO_LOG_PRECISION=us) or from this harness's wall clock around whole
commands. The scripts run exactly as users run them.
"""

import datetime
import json
import logging
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from conftest import (LocalEnsemble, OutputProcess, REPO, kazoo_client,  # noqa: E402
                      TICK_MS, script_command, stop_all, wait_until)
from history import check, leading, message, stamp  # noqa: E402
from bench_lab import lab_rows  # noqa: E402
from bench_vms import vm_rows  # noqa: E402
from zkensemble import cleaning_up, stop_as_ctrl_c  # noqa: E402

IPS = ["127.0.80.101", "127.0.80.102", "127.0.80.103"]
ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"
SESSION_S = 2.0
# Before each timed delete (the floor's, or a leader's on its way out) the
# harness leaves ZooKeeper idle this long. A real leader leaves at a random
# moment, to an ensemble that is mostly idle, and an idle ensemble answers
# its first write slower than one kept busy (on the 2-core VM of the README's
# table: 2.9 ms from a delete to the notification after 50 ms or more of
# quiet, 1.5 to 1.9 ms with deletes back to back). Both sides wait alike.
QUIET_S = 0.15


# BENCH_ONLY=lab,vms (the steps' names, as the JSON has them) runs only those.
ONLY = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))

# Every process the bench starts. Each step stops its own; main() stops
# whatever a failed step left, so that nothing outlives the bench.
STARTED = []
# The measured processes, in the order started: a step that fails prints the
# last lines of each it ran.
MEASURED = []


def seconds(line):
    """A line's stamp as time.time() counts: the scripts stamp in UTC."""
    return stamp(line).replace(tzinfo=datetime.timezone.utc).timestamp()


class Proc(OutputProcess):
    """A measured process; its timestamped lines (to the microsecond) are
    collected as they come."""

    def __init__(self, command, env=None):
        super().__init__(command, dict(env or {}, ZKDEMO_LOG_PRECISION="us"))
        self.name = os.path.basename(next((a for a in command if a.endswith(".py")), command[0]))
        STARTED.append(self.proc)
        MEASURED.append(self)

    def tail(self, count=12):
        """Its last lines, stdout and stderr, for a step that failed."""
        if self.proc.poll() is None:
            self.stop()
        elif not self.stderr and self.proc.stderr and not self.proc.stderr.closed:
            self.stderr = self.proc.stderr.read()
        said = self.lines[-count:] + [f"stderr: {line}" for line in
                                      self.stderr.splitlines()[-count:]]
        return (f"{self.name} (pid {self.proc.pid}, exit {self.proc.returncode}), "
                f"its last lines:\n" + "\n".join(f"    {line}" for line in said or ["(none)"]))


    def first(self, text, since=0):
        """Its first line from `since` on that holds `text`; None while there is
        none, and an error once it has exited without one."""
        found = next((line for line in self.lines[since:] if text in line), None)
        if found is None and self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited {self.proc.returncode} "
                                 f"without saying {text!r}")
        return found

    def said(self, text, since=0):
        return [line for line in self.lines[since:] if message(line) == text]

    def leading(self):
        return leading(self.lines)


def popen(command, stderr=subprocess.DEVNULL):
    """A process whose output is not read (its memory is measured)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    STARTED.append(process)
    return process


def stop_leftovers():
    """Stop whatever the bench started and is still running; returns how many."""
    left = [process for process in STARTED if process.poll() is None]
    stop_all(left)
    return len(left)


def wait_for(condition, timeout, what):
    return wait_until(condition, timeout, interval=0.005, what=what)


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


# --- failover ---------------------------------------------------------------------

def elector_command(kind, hosts, extra=()):
    if kind == "create.py":
        return script_command("create.py", "3600", "--hosts", hosts, *extra)
    return [sys.executable, os.path.join(HERE, "bench_electors.py"), kind, hosts]


ROOTS = {"create.py": "/zkdemo", "kazoo": "/zkdemo/kazoo-election", "naive": "/zkdemo/naive"}


def failover(kind, hosts, zk, electors, changes, crash=False, floor=None):
    """Make the leader go `changes` times; time each handover. With a Floor,
    take one of its samples before each handover, among the same electors."""
    extra = ("--session-timeout", str(SESSION_S)) if crash else ()
    pool = []

    def contenders():
        root = ROOTS[kind]
        if not zk.exists(root):
            return 0
        return sum(1 for c in zk.get_children(root) if c.startswith("node-") or "__lock__" in c)

    def add():
        pool.append(Proc(elector_command(kind, hosts, extra)))
        wait_for(lambda: contenders() >= len(pool), 30, "an elector to join")

    def notifications():
        return sum(1 for p in pool + finished for line in list(p.lines) if "woken:" in line)

    gaps, floor_gaps, finished = [], [], []
    try:
        for _ in range(electors):
            add()
        before = notifications()
        for _ in range(changes):
            leader = wait_for(lambda: next((p for p in pool if p.leading()), None), 30,
                              "a leader")
            if floor:
                time.sleep(QUIET_S)   # pacing the load, not waiting for anything
                floor_gaps.append(floor.sample())
            if not crash:
                time.sleep(QUIET_S)
            marks = {id(p): len(p.lines) for p in pool}
            leader.stop(signal.SIGKILL if crash else signal.SIGTERM)
            killed_at = time.time()
            pool.remove(leader)
            finished.append(leader)
            successor = wait_for(lambda: next((p for p in pool if p.said(
                "became leader", marks[id(p)])), None), SESSION_S * 3 + 10, "a successor")
            became = seconds(successor.said("became leader", marks[id(successor)])[0])
            if crash:
                gaps.append(became - killed_at)
            else:
                released = seconds(leader.said("no longer leader (exiting)")[-1])
                gaps.append(became - released)
            add()  # a newcomer joins at the back of the queue
        per_change = (notifications() - before) / changes
    finally:
        stop_all(pool + finished)
    if not crash:  # while we are at it: never two leaders at once, in any of them
        check((str(p.proc.pid), p.lines, True) for p in pool + finished)
    return gaps, per_change, floor_gaps


def failover_row(gaps, per_change, electors):
    ms = [g * 1000 for g in gaps]
    return {"electors": electors, "changes": len(gaps), "p50_ms": round(percentile(ms, 50), 2),
            "p99_ms": round(percentile(ms, 99), 2),
            "notifications_per_change": round(statistics.mean(per_change), 2)}


class Floor:
    """ZooKeeper's own limit for a handover: one client (`deleter`, on one
    server) deletes a znode; another, in a process of its own on another
    server, has an exists() watch on it. Delete issued -> callback run.
    An election must also read the list of contenders again once woken (the
    znodes before its own may have gone too): delete issued -> that read's
    answer, sent from the callback, is the floor with a re-read."""

    def __init__(self, deleter, watcher_host, samples):
        self.deleter = deleter
        deleter.ensure_path("/zkdemo/floor")
        self.paths = [deleter.create("/zkdemo/floor/f-", sequence=True) for _ in range(samples)]
        self.watcher = Proc([sys.executable, os.path.join(HERE, "bench_electors.py"), "floor",
                             watcher_host, *self.paths])
        wait_for(lambda: self.watcher.said("watching"), 30, "the floor's watcher")

    def sample(self):
        """(delete -> notification, delete -> re-read answered), in seconds."""
        path = self.paths.pop(0)
        mark = len(self.watcher.lines)
        issued = time.time()
        self.deleter.delete(path)

        def said(what):
            return next((seconds(line) - issued for line in self.watcher.lines[mark:]
                         if message(line) == f"{what}: {path}"), None)
        listed = wait_for(lambda: said("listed"), 10, "the floor's notification and read")
        return said("woken"), listed

    def close(self):
        self.watcher.stop()


def failover_side_by_side(hosts, zk, deleter, watcher_host, rounds=4, changes=25):
    """ZooKeeper's floor, create.py, kazoo's Election and the naive election
    with 10 electors, in interleaved rounds, so that a noisy moment hits all
    alike; a floor sample is taken before every handover, among the same
    electors. Each election's handover is given as a ratio to the floor: pooled
    p50 and p99, and the spread of the per-round p50 ratios (each round's
    handovers against the floor samples taken between them)."""
    kinds = {"failover": "create.py", "failover_kazoo_election": "kazoo",
             "failover_naive": "naive"}
    gaps = {key: [] for key in [*kinds, "floor", "reread"]}
    per_change = {key: [] for key in kinds}
    round_ratios = {key: [] for key in kinds}
    own_floor = {key: [] for key in kinds}   # the floor samples taken among its electors
    for _ in range(rounds):
        for key, kind in kinds.items():
            floor = Floor(deleter, watcher_host, changes)
            try:
                g, n, f = failover(kind, hosts, zk, 10, changes, floor=floor)
            finally:
                floor.close()
            woken = [w for w, _ in f]
            gaps[key] += g
            gaps["floor"] += woken
            gaps["reread"] += [listed for _, listed in f]
            own_floor[key] += woken
            per_change[key].append(n)
            round_ratios[key].append(statistics.median(g) / statistics.median(woken))
    ms = {key: [g * 1000 for g in gaps[key]] for key in ("floor", "reread")}
    floor_p50, floor_p99 = percentile(ms["floor"], 50), percentile(ms["floor"], 99)
    reread_p50 = percentile(ms["reread"], 50)
    rows = {"floor": {"samples": len(ms["floor"]), "p50_ms": round(floor_p50, 2),
                      "p99_ms": round(floor_p99, 2), "reread_p50_ms": round(reread_p50, 2),
                      "reread_p99_ms": round(percentile(ms["reread"], 99), 2)}}
    for key in kinds:
        row = failover_row(gaps[key], per_change[key], 10)
        ratios = round_ratios[key]
        row.update(p50_x_floor=round(row["p50_ms"] / floor_p50, 2),
                   p99_x_floor=round(row["p99_ms"] / floor_p99, 2),
                   p50_x_floor_rounds=[round(min(ratios), 2), round(max(ratios), 2)],
                   p50_x_reread=round(row["p50_ms"] / reread_p50, 2),
                   floor_among_them_p50_ms=round(statistics.median(own_floor[key]) * 1000, 2))
        rows[key] = row
    return rows


def failover_scaling(hosts, zk, sizes=(50, 200), changes=10):
    """create.py's handover as the number of electors grows."""
    rows = {}
    for electors in sizes:
        g, n, _ = failover("create.py", hosts, zk, electors, changes)
        rows[f"failover_{electors}"] = failover_row(g, [n], electors)
    return rows


# --- lock handover ----------------------------------------------------------------

STORE = "127.0.80.100:7000"


def lock_handover(hosts, zk, deleter, watcher_host, batches=3, holders=12):
    """lock.py's handover: a queue of holders, each holding the lock 1.5 s
    (one write) and letting go; release (`time is up: letting go`) -> the
    next holder's `holding the lock`, and -> its first write accepted at
    store.py (lock.py waits a second after taking the lock before its first
    write: that second is in this figure and taken out of the next). A floor
    sample is taken while the first of each queue holds, among the waiting
    holders."""
    store = Proc(script_command("store.py", "--listen", STORE, "--file",
                                os.path.join(REPO, ".zkdemo", "bench-store.txt")))
    wait_for(lambda: store.first(f"listening on {STORE}"), 30, "store.py")
    held, written, woken = [], [], []
    try:
        for _ in range(batches):
            queue = []
            floor = Floor(deleter, watcher_host, holders)
            try:
                for n in range(holders + 1):
                    queue.append(Proc(script_command(
                        "lock.py", "3600" if n == 0 else "1.5", "--name", "bench",
                        "--store", STORE, "--hosts", hosts)))
                    wait_for(lambda: len(zk.get_children("/zkdemo-locks/bench")
                                         if zk.exists("/zkdemo-locks/bench") else []) > n,
                             30, "a holder to queue")
                wait_for(lambda: queue[0].first("holding the lock"), 30, "the first holder")
                for _ in range(holders):
                    time.sleep(QUIET_S)   # pacing the load, not waiting for anything
                    woken.append(floor.sample()[0])
            finally:
                floor.close()
            queue[0].stop()   # Ctrl-C's way: it deletes its znode, the queue moves
            for process in queue[1:]:
                process.wait(holders * 5 + 30)
            for before, after in zip(queue[1:], queue[2:]):
                released = seconds(before.first("time is up: letting go"))
                pid = after.proc.pid
                accepted = next(line for line in store.lines
                                if f"pid {pid} write 1" in line and "accepted" in line)
                held.append(seconds(after.first("holding the lock")) - released)
                written.append(seconds(accepted) - released)
    finally:
        stop_all([store])
    ms = [h * 1000 for h in held]
    floor_p50 = percentile([w * 1000 for w in woken], 50)
    write_ms = [(w - 1.0) * 1000 for w in written]   # lock.py's one-second wait taken out
    return {"handovers": len(held), "p50_ms": round(percentile(ms, 50), 2),
            "p99_ms": round(percentile(ms, 99), 2), "floor_p50_ms": round(floor_p50, 2),
            "p50_x_floor": round(percentile(ms, 50) / floor_p50, 2),
            "first_write_p50_s": round(percentile(written, 50), 3),
            "first_write_p50_ms_past_the_wait": round(percentile(write_ms, 50), 2),
            "first_write_p99_ms_past_the_wait": round(percentile(write_ms, 99), 2)}


# --- watch ------------------------------------------------------------------------------

# How watch.py says that changes reached it folded together: "N updates
# folded into one notification", "N child changes folded", a znode "updated
# N times before this read", "deleted before it could be read", or deleted
# with "updates just before it may be unseen".
FOLD_NOTES = ("folded", "before this read", "before it could be read", "may be unseen")


def watch_bench(hosts, zk, events=600, rate=100.0):
    """A writer makes creates, updates and deletes at `rate` per second, each
    znode living at least 100 ms; match each change with watch.py's line.
    Writes are asynchronous (one session keeps them in order), so the writer
    is not held to one round trip at a time."""
    watcher = Proc(script_command("watch.py", "--hosts", hosts))
    wait_for(lambda: any("watching /zkdemo" in line for line in watcher.lines), 30, "watch.py")
    sent = []  # (time the write was sent, expected message)
    live = []  # (path, created_at, updated)
    answers = []
    start = time.monotonic()
    for i in range(events):
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
        now = time.monotonic()
        ready = [n for n in live if now - n[1] >= 0.1]
        if ready and (len(live) >= 20 or random.random() < 0.5):
            path, _, updated = ready[0]
            live.remove(ready[0])
            if not updated:
                answers.append(zk.set_async(path, b"second"))
                sent.append((time.time(), f"updated {path} second"))
                live.append((path, time.monotonic(), True))
            else:
                answers.append(zk.delete_async(path))
                sent.append((time.time(), f"deleted {path}"))
        else:
            path = f"/zkdemo/w-{rate:g}-{i:07d}"
            answers.append(zk.create_async(path, b"first"))
            sent.append((time.time(), f"created {path} first"))
            live.append((path, time.monotonic(), False))
    for answer in answers:
        answer.get()
    achieved = len(sent) / (time.monotonic() - start)
    for path, _, _ in live:
        zk.delete(path)
    # watch.py reports in order: once the very last write shows, every earlier
    # one has had its chance. One it never printed counts as not reported.
    last = f"deleted {live[-1][0]}" if live else sent[-1][1]
    try:
        wait_until(lambda: any(message(line) == last for line in watcher.lines), 30)
        caught_up = True
    except AssertionError:
        caught_up = False
    watcher.stop(signal.SIGINT)
    printed = {}
    for line in watcher.lines[1:]:
        printed.setdefault(message(line), seconds(line))
    latencies = [(printed[msg] - t) * 1000 for t, msg in sent if msg in printed]
    return {"events_sent": len(sent), "events_reported": len(latencies),
            "rate_per_s": rate, "achieved_per_s": round(achieved), "caught_up": caught_up,
            "folds_reported": sum(any(note in line for note in FOLD_NOTES)
                                  for line in watcher.lines),
            "p50_ms": round(percentile(latencies, 50), 1),
            "p99_ms": round(percentile(latencies, 99), 1)}


# --- cold start and scale -------------------------------------------------------------------

def wall(command):
    started = time.monotonic()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.monotonic() - started


def cold_start(hosts, runs=7):
    first = hosts.split(",")[0]
    commands = {"get_py_s": script_command("get.py", "--hosts", hosts),
                "zkcli_ls_s": [ZKCLI, "-server", first, "ls", "/zkdemo"],
                "python_floor_s": [sys.executable, "-c", "pass"]}
    times = {key: [] for key in commands}
    for _ in range(runs):  # interleaved, so that a noisy moment hits all three
        for key, command in commands.items():
            times[key].append(wall(command))
    return {key: round(statistics.median(values), 3) for key, values in times.items()}


def peak_rss_mb(process):
    """Wait for a child and return its peak resident memory (MB)."""
    _, _, usage = os.wait4(process.pid, 0)
    process.returncode = 0
    return round(usage.ru_maxrss / 1024, 1)


def scale(hosts, zk, children=10_000):
    for batch in range(0, children, 5000):
        for result in [zk.create_async(f"/zkdemo/many-{i:06d}", b"x" * 20)
                       for i in range(batch, min(children, batch + 5000))]:
            result.get()
    # ZooKeeper's Java client (zkCli.sh) refuses a reply over jute.maxbuffer (1 MB).
    listing = subprocess.run([ZKCLI, "-server", hosts.split(",")[0], "ls", "/zkdemo"],
                             capture_output=True, text=True, timeout=300)
    said = (listing.stdout + listing.stderr).strip().splitlines() or ["no output"]
    zkcli = "ok" if "many-000000" in listing.stdout else next(
        (line for line in said if "KeeperErrorCode" in line), said[-1])
    started = time.monotonic()
    get = popen(script_command("get.py", "--hosts", hosts), stderr=subprocess.PIPE)
    _, _, usage = os.wait4(get.pid, 0)
    get.returncode = 0
    get_mb, get_s = round(usage.ru_maxrss / 1024, 1), time.monotonic() - started
    error = get.stderr.read().decode().strip()
    if error:   # what a user then sees, instead of a figure
        delete_children(zk, children)
        return {"children": children, "get_py_error": error, "get_py_s": round(get_s, 2),
                "zkcli_ls": zkcli}

    started = time.monotonic()
    watcher = Proc(script_command("watch.py", "--hosts", hosts))
    wait_for(lambda: sum(1 for line in watcher.lines if " present " in line) >= children, 120,
             "watch.py to list every child")
    watch_s = time.monotonic() - started
    watcher.proc.send_signal(signal.SIGINT)
    watch_mb = peak_rss_mb(watcher.proc)

    elector = popen(script_command("create.py", "1", "--hosts", hosts))
    create_mb = peak_rss_mb(elector)
    delete_children(zk, children)
    return {"children": children, "get_py_s": round(get_s, 2), "get_py_peak_mb": get_mb,
            "watch_py_start_s": round(watch_s, 2), "watch_py_peak_mb": watch_mb,
            "create_py_peak_mb": create_mb, "zkcli_ls": zkcli}


def delete_children(zk, children):
    for batch in range(0, children, 5000):
        for result in [zk.delete_async(f"/zkdemo/many-{i:06d}")
                       for i in range(batch, min(children, batch + 5000))]:
            result.get()


def scaling(hosts, zk, sizes=(1_000, 10_000, 50_000, 100_000)):
    rows = {}
    for children in sizes:
        rows[str(children)] = scale(hosts, zk, children)
    return rows


def watch_ramp(hosts, zk, rates=(100, 200, 400, 800, 1600, 3200, 6400), seconds=3):
    """watch.py at rising change rates, until it first misses or folds one,
    or until this one writer (a write at a time) cannot go faster. A short
    run at the first rate comes before, and does not count: the first
    changes of this kind after a start stall now and then for 100 to 250 ms
    (ZooKeeper's JVM warming up), and folding then says nothing of watch.py."""
    warm_up = watch_bench(hosts, zk, events=rates[0] * 2, rate=float(rates[0]))
    rows = []
    for rate in rates:
        row = watch_bench(hosts, zk, events=int(rate * seconds), rate=float(rate))
        rows.append(row)
        if row["events_reported"] < row["events_sent"] or row["achieved_per_s"] < 0.8 * rate:
            break
    kept_up = [r for r in rows if r["events_reported"] == r["events_sent"]]
    return {"warm_up": warm_up, "steps": rows,
            "highest_rate_all_reported": kept_up[-1]["rate_per_s"] if kept_up else None,
            "first_rate_missed": rows[-1]["rate_per_s"] if rows[-1] not in kept_up else None}


def worker_memory(hosts, workers=10):
    """Resident memory of what create-start.py starts: each worker's process
    group (its shell loop and its create.py), summed."""
    run_dir = os.path.join(REPO, ".zkdemo", "bench-workers")
    env = dict(os.environ, ZKDEMO_RUN_DIR=run_dir)
    subprocess.run(script_command("create-start.py", str(workers), "--hosts", hosts), env=env,
                   check=True, capture_output=True)
    try:
        groups = [int(name.split(".")[0]) for name in os.listdir(os.path.join(run_dir, "workers"))]

        def members(group):
            found = []
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        if int(f.read().rsplit(")", 1)[1].split()[2]) == group:
                            found.append(int(pid))
                except (OSError, ValueError):
                    pass
            return found

        def rss_mb(pid):
            try:
                with open(f"/proc/{pid}/status") as f:
                    return next(int(line.split()[1]) for line in f
                                if line.startswith("VmRSS")) / 1024
            except (OSError, StopIteration):
                return 0.0
        wait_for(lambda: all(len(members(g)) >= 2 for g in groups), 30, "every worker's create.py")
        wait_for(lambda: all(any("create.py" in open(f"/proc/{p}/cmdline").read()
                                 for p in members(g)) for g in groups), 30, "create.py to start")
        logs = [os.path.join(run_dir, name) for name in os.listdir(run_dir)
                if name.startswith("worker-")]
        wait_for(lambda: all("created /zkdemo/node-" in open(log).read() for log in logs), 30,
                 "every worker's create.py to be connected")
        per_worker = [sum(rss_mb(p) for p in members(g)) for g in groups]
    finally:
        subprocess.run(script_command("create-stop.py"), env=env, capture_output=True)
    return {"workers": workers, "per_worker_mb": round(statistics.median(per_worker), 1),
            "processes_per_worker": 2, "total_mb": round(sum(per_worker), 1)}


# --- the run --------------------------------------------------------------------------------

def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "unknown CPU")
    return f"{os.cpu_count()} cores, {cpu}, Python {sys.version.split()[0]}"


def handover(row, floor=True):
    text = (f"p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, "
            f"{row['notifications_per_change']} notifications/change")
    if floor and "p50_x_floor" in row:
        low, high = row["p50_x_floor_rounds"]
        text += (f"; {row['p50_x_floor']}x the floor at p50 (rounds {low}-{high}x), "
                 f"{row['p99_x_floor']}x at p99; {row['p50_x_reread']}x the floor with "
                 "a re-read at p50")
    return text


def table(results):
    """The README's table; a step that failed is one row saying why."""
    failed = results.get("failed", {})
    rows = []
    for key, build in (("failover", failover_table), ("failover_scaling", scaling_table),
                       ("lock_handover", lock_table), ("crash_failover", crash_table), ("watch", watch_table),
                       ("cold_start", cold_start_table), ("scale", scale_table),
                       ("workers", workers_table), ("reconnect", reconnect_table),
                       ("lab", lambda f: lab_table(f.get("lab", {"not_measured": "not run"}))),
                       ("vms", lambda f: vms_table(f.get("vms", {"not_measured": "not run"})))):
        if key in results.get("not_run", []):
            continue
        if key in failed:
            rows.append((key.replace("_", " "), f"FAILED: {failed[key]}"))
        else:
            rows += build(results)
    width = max((len(name) for name, _ in rows), default=0)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def failover_table(f):
    return [("floor: delete -> exists() watch fired",
             f"p50 {f['floor']['p50_ms']} ms, p99 {f['floor']['p99_ms']} ms "
             f"({f['floor']['samples']} deletes, one before each handover)"),
            ("floor with a re-read: -> getChildren answered",
             f"p50 {f['floor']['reread_p50_ms']} ms, p99 {f['floor']['reread_p99_ms']} ms"),
            ("failover, create.py, 10 electors", handover(f["failover"])),
            ("failover, kazoo Election, 10", handover(f["failover_kazoo_election"])),
            ("failover, naive (herd), 10", handover(f["failover_naive"]))]


def scaling_table(f):
    rows = []
    for electors in (50, 200):
        row = f[f"failover_{electors}"]
        ratio = (f"; p50 {row['p50_ms'] / f['failover']['p50_ms']:.2f}x the 10-elector one"
                 if "failover" in f else "")
        rows.append((f"failover, create.py, {electors} electors", f"{handover(row)}{ratio}"))
    return rows


def lock_table(f):
    row = f["lock_handover"]
    return [("lock handover, lock.py, a queue of 12",
             f"p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms ({row['handovers']} handovers); "
             f"{row['p50_x_floor']}x the floor at p50 (the floor among them: "
             f"{row['floor_p50_ms']} ms)"),
            ("  -> its first write accepted",
             f"p50 {row['first_write_p50_s']} s: lock.py's 1 s wait and "
             f"{row['first_write_p50_ms_past_the_wait']} ms (p99 "
             f"{row['first_write_p99_ms_past_the_wait']} ms)")]


def crash_table(f):
    return [("crash failover (SIGKILL)",
             f"p50 {f['crash_failover']['p50_s']} s with a "
             f"{f['crash_failover']['session_timeout_s']} s session timeout")]


def watch_table(f):
    rows = []
    warm_up = [f["watch"]["warm_up"]] if "warm_up" in f["watch"] else []
    for step in warm_up + f["watch"]["steps"]:
        name = "watch.py warm-up (not counted)" if step in warm_up else "watch.py"
        rows.append((f"{name} at {step.get('achieved_per_s', step['rate_per_s']):g} changes/s",
                     f"{step['events_reported']}/{step['events_sent']} reported one by one, "
                     f"{step.get('folds_reported', 0)} fold lines, "
                     f"{'caught up' if step.get('caught_up', True) else 'still behind after 30 s'}"
                     f"; p50 {step['p50_ms']} ms, p99 {step['p99_ms']} ms"))
    missed = f["watch"]["first_rate_missed"]
    kept_up = f["watch"]["highest_rate_all_reported"]
    fastest = max(step.get("achieved_per_s", 0) for step in f["watch"]["steps"])
    rows.append(("watch.py keeps up to",
                 (f"{kept_up:g}/s asked" if kept_up else "no rate: it folded at the first")
                 + (f"; first misses at {missed:g}/s" if missed else
                    f": it missed nothing up to the writer's limit, {fastest:g} writes/s")))
    return rows


def cold_start_table(f):
    return [("cold start (median wall)",
             f"get.py {f['cold_start']['get_py_s']} s, zkCli.sh ls "
             f"{f['cold_start']['zkcli_ls_s']} s, python3 -c pass "
             f"{f['cold_start']['python_floor_s']} s")]


def scale_table(f):
    rows = []
    for children, row in f["scale"].items():
        name = f"{int(children):,} children"
        if "get_py_error" in row:
            rows.append((name, f"get.py fails: {row['get_py_error']}"))
            continue
        rows.append((name, f"get.py {row['get_py_s']} s / {row['get_py_peak_mb']} MB, watch.py "
                     f"start {row['watch_py_start_s']} s / {row['watch_py_peak_mb']} MB, "
                     f"create.py {row['create_py_peak_mb']} MB; zkCli.sh ls: "
                     f"{row.get('zkcli_ls', 'not tried')}"))
    return rows


def workers_table(f):
    w = f["workers"]
    return [(f"create-start.py {w['workers']}",
             f"{w['per_worker_mb']} MB per worker ({w['processes_per_worker']} processes: "
             f"a shell loop and create.py), {w['total_mb']} MB in all")]


def reconnect_table(f):
    return [(f"back in the session after {row['outage_s']:g} s without a quorum",
             ", ".join(f"{name} {row[name]}" for name in ("create.py", "watch.py"))
             + f" after `local-cluster.py start` brought the quorum back "
            f"({row['session_timeout_s']:g} s sessions)")
            for row in f["reconnect"]]


def lab_table(lab):
    if "not_measured" in lab:
        return [("lab (machines, partition)", lab["not_measured"])]
    rows = []
    for key in ("memory_256", "memory_512"):
        m = lab[key]
        rows.append((f"lab machine of {m['limit_mb']} MB",
                     f"ZooKeeper {m['zookeeper_mb']} MB, zkCli.sh +{m['zkcli_adds_mb']}, "
                     f"watch.py +{m['watch_py_adds_mb']}, each worker +{m['worker_adds_mb']}; "
                     f"{m['workers_that_fit']} workers fit (peak {m['checked_peak_mb']} MB, "
                     f"{'no OOM kill' if m['checked_without_oom'] else 'OOM KILLED'})"))
    p = lab["partition"]
    rows.append(("lab partition of the leader's machine",
                 f"new ZooKeeper leader {p['to_zookeeper_leader_s']} s, new create.py leader "
                 f"{p['to_create_py_leader_s']} s ({p['session_timeout_s']:g} s sessions)"))
    c = lab.get("chaos")
    if c:
        rows.append((f"chaos SEED={c['seed']} MINUTES={c['minutes']:g}",
                     f"{sum(c['faults'].values())} faults, {c['leadership_changes']} leader "
                     f"terms, {c['overlaps']} overlaps, {c['writes_ok']} writes, "
                     f"{c['events_lost']} events lost"))
        for kind, r in c["recovery"].items():
            rows.append((f"chaos recovery after {kind} ({r['count']})",
                         f"to a serving quorum p50 {r['to_quorum_p50']:.1f} s, max "
                         f"{r['to_quorum_max']:.1f} s; to a create.py leader p50 "
                         f"{r['to_leader_p50']:.1f} s, max {r['to_leader_max']:.1f} s; writes "
                         f"stalled p50 {r['writes_stalled_p50']:.1f} s, max "
                         f"{r['writes_stalled_max']:.1f} s"))
    return rows


def vms_table(vms):
    if "not_measured" in vms:
        return [("VMs (provision/vm.py)", vms["not_measured"])]
    m = vms["memory_256"]
    up, boot = vms["up_s"], vms.get("boot_zoo1", {})
    return [("vm.py vagrant up zoo1 zoo2 zoo3",
             f"min {up['min']} s, median {up['median']} s, max {up['max']} s in "
             f"{len(up['runs'])} boots ({', '.join(map(str, up['runs']))})"),
            ("one VM's boot (zoo1, systemd-analyze)",
             ", ".join(f"{part} {boot[part + '_s']} s" for part in ("kernel", "initrd", "userspace")
                       if part + "_s" in boot) or "not read"),
            ("VM of 256 MB (zoo1, /proc/meminfo)",
             f"the system sees {m['system_sees_mb']} MB; Debian and ZooKeeper "
             f"{m['zookeeper_and_system_mb']} MB, zkCli.sh +{m['zkcli_adds_mb']}, watch.py "
             f"+{m['watch_py_adds_mb']}, each worker +{m['worker_adds_mb']}; "
             f"{m['workers_that_fit']} workers fit (ended by {m['ended_by']}, "
             f"{m['oom_kills']} OOM kills)")]


def main():
    # SIGTERM and SIGHUP stop the bench as Ctrl-C does: every step's
    # `finally` stops what it started, the lab's and the VMs' rows included.
    stop_as_ctrl_c()
    logging.getLogger("kazoo").setLevel(logging.CRITICAL + 1)
    ensemble = LocalEnsemble("bench", IPS)
    ensemble.state_dir = os.path.join(REPO, ".zkdemo", "bench")
    ensemble.wipe()
    ensemble.up()
    results = {"machine": machine(), "failed": {}}

    def measure(key, step, into=None):
        """Run one step; a failure is recorded (table and JSON), not raised."""
        if ONLY and key not in ONLY:
            results.setdefault("not_run", []).append(key)
            return
        started, first = time.monotonic(), len(MEASURED)
        try:
            value = step()
        except Exception as e:   # noqa: BLE001 - any failure of a step is reported
            reason = (f"{type(e).__name__}: {e}".splitlines() or [type(e).__name__])[0]
            results["failed"][key] = reason
            print(f"bench: {key} FAILED: {reason}", file=sys.stderr)
            ran = MEASURED[first:]
            if len(ran) > 10:
                print(f"bench: {key}: {len(ran) - 10} earlier processes not shown", file=sys.stderr)
            for process in ran[-10:]:
                print(f"bench: {key}: {process.tail()}", file=sys.stderr)
            return
        if into is None:
            results[key] = value
        else:
            results.update(value)
        print(f"bench: {key} done in {time.monotonic() - started:.0f} s", file=sys.stderr)

    try:
        ensemble.wait_serving()
        hosts = ensemble.hosts
        zk = kazoo_client(hosts)
        zk.ensure_path("/zkdemo")
        deleter = kazoo_client(f"{IPS[0]}:2181")
        measure("failover", lambda: failover_side_by_side(hosts, zk, deleter, f"{IPS[1]}:2181"),
                into=results)
        measure("failover_scaling", lambda: failover_scaling(hosts, zk), into=results)
        measure("lock_handover", lambda: lock_handover(hosts, zk, deleter, f"{IPS[1]}:2181"))
        measure("crash_failover", lambda: crash_row(hosts, zk))
        measure("watch", lambda: watch_ramp(hosts, zk))
        measure("cold_start", lambda: cold_start(hosts))
        measure("scale", lambda: scaling(hosts, zk))
        measure("workers", lambda: worker_memory(hosts))
        measure("reconnect", lambda: reconnect_rows(ensemble))   # last: it kills servers
        zk.stop()
    finally:
        with cleaning_up():
            left = stop_leftovers()
            if left:
                print(f"bench: stopped {left} processes that a failed step left", file=sys.stderr)
            ensemble.down()
    measure("lab", lab_rows)
    measure("vms", vm_rows)
    path = os.environ.get("BENCH_JSON") or os.path.join(REPO, ".zkdemo", "bench.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print(f"machine: {results['machine']}")
    print(table(results))
    print(f"JSON: {path}")
    return 1 if results["failed"] else 0


def reconnect_rows(ensemble, outages=(5, 30, 60)):
    """Two of three servers killed for each outage, then started again: how
    long after the quorum is back create.py and watch.py are in their own
    sessions again (the scripts try about once a second, however long the
    outage was)."""
    rows = []
    for outage in outages:
        processes = [Proc(script_command("create.py", "3600", "--hosts", ensemble.hosts)),
                     Proc(script_command("watch.py", "--hosts", ensemble.hosts))]
        try:
            elector, watch = processes
            wait_for(lambda: elector.leading(), 30, "a leader")
            wait_for(lambda: watch.said(f"watching {'/zkdemo'}; Ctrl-C to stop"), 30, "watch.py")
            pids = ensemble.pids()
            for name in ("zoo1", "zoo2"):
                os.kill(pids[name], signal.SIGKILL)
            time.sleep(outage)   # the outage itself: what is measured comes after it
            marks = [len(p.lines) for p in processes]
            ensemble.run("start", "1")   # returns once it serves: a quorum again
            quorum = time.time()
            ensemble.run("start", "2")
            # The scripts ask for 10 s; the servers grant at most 20 ticks.
            row = {"outage_s": outage, "session_timeout_s": min(10.0, 20 * TICK_MS / 1000)}
            for name, process, mark in zip(("create.py", "watch.py"), processes, marks):
                line = wait_for(lambda: process.first("reconnected", mark), 120,
                                f"{name} to reconnect")
                back = round(seconds(line) - quorum, 2)
                row[name] = (f"{back} s" if message(line) == "reconnected (same session)"
                             else f"{back} s, but in a NEW session (its session expired)")
            rows.append(row)
            print(f"bench: reconnect after {outage} s: {row}", file=sys.stderr)
        finally:
            stop_all(processes)
    return rows


def crash_row(hosts, zk, changes=5):
    gaps, _, _ = failover("create.py", hosts, zk, 3, changes, crash=True)
    return {"session_timeout_s": SESSION_S, "changes": changes,
            "p50_s": round(statistics.median(gaps), 2), "max_s": round(max(gaps), 2)}


if __name__ == "__main__":
    shutil.which("java") or sys.exit("bench: java not found; run `make setup`")
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
