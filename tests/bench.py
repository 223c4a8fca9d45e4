#!/usr/bin/env python3
"""`make bench`: election failover, watch latency, cold start and scale.

It brings up a loopback ensemble of its own (127.0.80.101-103, tick 200 ms,
state in .zkdemo/bench), measures, prints a table and writes JSON to
$BENCH_JSON (default .zkdemo/bench.json). Every time comes from the measured
processes' own timestamped lines (the same clock, to the millisecond) or from
this harness's wall clock around whole commands. The scripts run exactly as
users run them.
"""

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
                      script_command, wait_until)
from election_checker import check, leading, stamp  # noqa: E402
from bench_lab import lab_rows  # noqa: E402

IPS = ["127.0.80.101", "127.0.80.102", "127.0.80.103"]
ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"
SESSION_S = 2.0


class Proc(OutputProcess):
    """A measured process; its timestamped lines are collected as they come."""

    def said(self, message, since=0):
        return [line for line in self.lines[since:] if line[24:] == message]

    def leading(self):
        return leading(self.lines)


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


def failover(kind, hosts, zk, electors, changes, crash=False):
    """Make the leader go `changes` times; time each handover."""
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

    gaps, finished = [], []
    try:
        for _ in range(electors):
            add()
        before = notifications()
        for _ in range(changes):
            leader = wait_for(lambda: next((p for p in pool if p.leading()), None), 30,
                              "a leader")
            marks = {id(p): len(p.lines) for p in pool}
            leader.stop(signal.SIGKILL if crash else signal.SIGTERM)
            killed_at = time.time()
            pool.remove(leader)
            finished.append(leader)
            successor = wait_for(lambda: next((p for p in pool if p.said(
                "became leader", marks[id(p)])), None), SESSION_S * 3 + 10, "a successor")
            became = stamp(successor.said("became leader", marks[id(successor)])[0]).timestamp()
            if crash:
                gaps.append(became - killed_at)
            else:
                released = stamp(leader.said("no longer leader (exiting)")[-1]).timestamp()
                gaps.append(became - released)
            add()  # a newcomer joins at the back of the queue
        per_change = (notifications() - before) / changes
    finally:
        for process in pool:
            process.stop()
    if not crash:  # while we are at it: never two leaders at once, in any of them
        check((str(p.proc.pid), p.lines, True) for p in pool + finished)
    return gaps, per_change


def failover_row(gaps, per_change, electors):
    ms = [g * 1000 for g in gaps]
    return {"electors": electors, "changes": len(gaps), "p50_ms": round(percentile(ms, 50), 1),
            "p99_ms": round(percentile(ms, 99), 1),
            "notifications_per_change": round(statistics.mean(per_change), 2)}


def failover_side_by_side(hosts, zk, rounds=3, changes=10):
    """create.py, kazoo's Election and the naive election with 10 electors,
    in interleaved rounds, so that a noisy moment hits all three alike; then
    create.py with 50."""
    kinds = {"failover": "create.py", "failover_kazoo_election": "kazoo",
             "failover_naive": "naive"}
    gaps = {key: [] for key in kinds}
    per_change = {key: [] for key in kinds}
    for _ in range(rounds):
        for key, kind in kinds.items():
            g, n = failover(kind, hosts, zk, 10, changes)
            gaps[key] += g
            per_change[key].append(n)
    rows = {key: failover_row(gaps[key], per_change[key], 10) for key in kinds}
    g, n = failover("create.py", hosts, zk, 50, rounds * changes)
    rows["failover_50"] = failover_row(g, [n], 50)
    return rows


# --- watch ------------------------------------------------------------------------------

def watch_bench(hosts, zk, events=600, rate=100.0):
    """A writer makes creates, updates and deletes at `rate` per second, each
    znode living at least 100 ms; match each change with watch.py's line."""
    watcher = Proc(script_command("watch.py", "--hosts", hosts))
    wait_for(lambda: any("watching /zkdemo" in line for line in watcher.lines), 30, "watch.py")
    sent = []  # (time the write returned, expected message start)
    live = []  # (path, created_at, updated)
    start = time.monotonic()
    for i in range(events):
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
        now = time.monotonic()
        ready = [n for n in live if now - n[1] >= 0.1]
        if ready and (len(live) >= 20 or random.random() < 0.5):
            path, _, updated = ready[0]
            live.remove(ready[0])
            if not updated:
                zk.set(path, b"second")
                sent.append((time.time(), f"updated {path} second"))
                live.append((path, time.monotonic(), True))
            else:
                zk.delete(path)
                sent.append((time.time(), f"deleted {path}"))
        else:
            path = zk.create("/zkdemo/w-", b"first", sequence=True)
            sent.append((time.time(), f"created {path} first"))
            live.append((path, time.monotonic(), False))
    for path, _, _ in live:
        zk.delete(path)
    # watch.py reports in order: once the very last write shows, every earlier
    # one has had its chance. One it never printed counts as not reported.
    last = f"deleted {live[-1][0]}" if live else sent[-1][1]
    try:
        wait_until(lambda: any(line[24:] == last for line in watcher.lines), 10)
    except AssertionError:
        pass
    watcher.stop(signal.SIGINT)
    printed = {}
    for line in watcher.lines[1:]:
        printed.setdefault(line[24:], stamp(line).timestamp())
    latencies = [(printed[msg] - t) * 1000 for t, msg in sent if msg in printed]
    return {"events_sent": len(sent), "events_reported": len(latencies),
            "rate_per_s": rate, "p50_ms": round(percentile(latencies, 50), 1),
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
    results = [zk.create_async(f"/zkdemo/many-{i:05d}", b"x" * 20) for i in range(children)]
    for result in results:
        result.get()
    started = time.monotonic()
    get = subprocess.Popen(script_command("get.py", "--hosts", hosts),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    get_mb = peak_rss_mb(get)
    get_s = time.monotonic() - started

    started = time.monotonic()
    watcher = Proc(script_command("watch.py", "--hosts", hosts))
    wait_for(lambda: sum(1 for line in watcher.lines if " present " in line) >= children, 120,
             "watch.py to list every child")
    watch_s = time.monotonic() - started
    watcher.proc.send_signal(signal.SIGINT)
    watch_mb = peak_rss_mb(watcher.proc)

    elector = subprocess.Popen(script_command("create.py", "1", "--hosts", hosts),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    create_mb = peak_rss_mb(elector)
    for i in range(children):
        zk.delete_async(f"/zkdemo/many-{i:05d}")
    wait_for(lambda: not any(c.startswith("many-") for c in zk.get_children("/zkdemo")), 60,
             "the children to go")
    return {"children": children, "get_py_s": round(get_s, 2), "get_py_peak_mb": get_mb,
            "watch_py_start_s": round(watch_s, 2), "watch_py_peak_mb": watch_mb,
            "create_py_peak_mb": create_mb}


# --- the run --------------------------------------------------------------------------------

def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "unknown CPU")
    return f"{os.cpu_count()} cores, {cpu}, Python {sys.version.split()[0]}"


def table(results):
    f = results
    rows = [("failover, create.py, 10 electors",
             f"p50 {f['failover']['p50_ms']} ms, p99 {f['failover']['p99_ms']} ms, "
             f"{f['failover']['notifications_per_change']} notifications/change"),
            ("failover, create.py, 50 electors",
             f"p50 {f['failover_50']['p50_ms']} ms, p99 {f['failover_50']['p99_ms']} ms, "
             f"{f['failover_50']['notifications_per_change']} notifications/change"),
            ("failover, kazoo Election, 10",
             f"p50 {f['failover_kazoo_election']['p50_ms']} ms, "
             f"p99 {f['failover_kazoo_election']['p99_ms']} ms, "
             f"{f['failover_kazoo_election']['notifications_per_change']} notifications/change"),
            ("failover, naive (herd), 10",
             f"p50 {f['failover_naive']['p50_ms']} ms, p99 {f['failover_naive']['p99_ms']} ms, "
             f"{f['failover_naive']['notifications_per_change']} notifications/change"),
            ("crash failover (SIGKILL)",
             f"p50 {f['crash_failover']['p50_s']} s with a "
             f"{f['crash_failover']['session_timeout_s']} s session timeout"),
            ("watch.py",
             f"{f['watch']['events_reported']}/{f['watch']['events_sent']} events at "
             f"{f['watch']['rate_per_s']:g}/s, p50 {f['watch']['p50_ms']} ms, "
             f"p99 {f['watch']['p99_ms']} ms"),
            ("cold start (median wall)",
             f"get.py {f['cold_start']['get_py_s']} s, zkCli.sh ls "
             f"{f['cold_start']['zkcli_ls_s']} s, python3 -c pass "
             f"{f['cold_start']['python_floor_s']} s"),
            ("10,000 children",
             f"get.py {f['scale']['get_py_s']} s / {f['scale']['get_py_peak_mb']} MB, "
             f"watch.py start {f['scale']['watch_py_start_s']} s / "
             f"{f['scale']['watch_py_peak_mb']} MB, create.py {f['scale']['create_py_peak_mb']} MB")]
    rows += lab_table(results.get("lab", {"not_measured": "not run"}))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


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
    return rows


def main():
    logging.getLogger("kazoo").setLevel(logging.CRITICAL + 1)
    ensemble = LocalEnsemble("bench", IPS)
    ensemble.state_dir = os.path.join(REPO, ".zkdemo", "bench")
    ensemble.wipe()
    ensemble.up()
    results = {"machine": machine()}
    try:
        ensemble.wait_serving()
        hosts = ensemble.hosts
        zk = kazoo_client(hosts)
        zk.ensure_path("/zkdemo")
        results.update(failover_side_by_side(hosts, zk))
        steps = [("crash_failover", lambda: crash_row(hosts, zk)),
                 ("watch", lambda: watch_bench(hosts, zk)),
                 ("cold_start", lambda: cold_start(hosts)),
                 ("scale", lambda: scale(hosts, zk))]
        for key, step in steps:
            started = time.monotonic()
            results[key] = step()
            print(f"bench: {key} done in {time.monotonic() - started:.0f} s", file=sys.stderr)
        zk.stop()
    finally:
        ensemble.down()
    started = time.monotonic()
    results["lab"] = lab_rows()
    print(f"bench: lab done in {time.monotonic() - started:.0f} s", file=sys.stderr)
    path = os.environ.get("BENCH_JSON") or os.path.join(REPO, ".zkdemo", "bench.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print(f"machine: {results['machine']}")
    print(table(results))
    print(f"JSON: {path}")


def crash_row(hosts, zk, changes=5):
    gaps, _ = failover("create.py", hosts, zk, 3, changes, crash=True)
    return {"session_timeout_s": SESSION_S, "changes": changes,
            "p50_s": round(statistics.median(gaps), 2), "max_s": round(max(gaps), 2)}


if __name__ == "__main__":
    shutil.which("java") or sys.exit("bench: java not found; run `make setup`")
    main()
