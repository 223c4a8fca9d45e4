"""The lab's rows of `make bench`: what fits in a machine's memory, and how
long a partition takes to heal over (tests/bench.py calls lab_rows()).

Memory, for each machine size (256 and 512 MB): ZooKeeper alone in the
machine's cgroup; what zkCli.sh adds at its peak; watch.py's resident size;
what each create-start.py worker adds (measured at 4 and 8 workers); the
largest number of workers that fits beside ZooKeeper, watch.py and a zkCli.sh
session with a tenth of the limit to spare, checked by running that many with
zkCli.sh and watch.py and reading the cgroup's peak and its OOM kills.

Partition: with a create.py elector on every machine, the first leading on
the ZooKeeper leader's machine, that machine is cut off; the row gives the
time from the cut to a new ZooKeeper leader on the majority side and to a
new create.py leader there.

Chaos: `make chaos` with seed 30 for 2 minutes in a lab of its own; its
recovery times by fault kind (p50 and max, from a fault's start to a
serving quorum and to a new create.py leader).
"""

import datetime
import json
import os
import subprocess
import sys
import time

from conftest import REPO, wait_until, utc_now
from history import leading, message, stamp
from test_lab import ENV, MACHINES, OnMachine, lab, srvr, ssh, what_is_missing, zk_leader

sys.path.insert(0, os.path.join(REPO, "provision"))
from lab import Cgroup  # noqa: E402
from zkensemble import cleaning_up, run_to_its_end  # noqa: E402

SESSION_S = 4.0


def mb(value):
    return round(value / 2**20, 1)


class Machine:
    """zoo1 of a bench lab of `memory` MB, and its cgroup."""

    def __init__(self, memory):
        self.name = f"zkdb{memory}"
        self.env = dict(ENV, ZKDEMO_LAB=self.name, ZKDEMO_VM_MEMORY=str(memory))
        self.cgroup = Cgroup(self.name, "zoo1")
        self.limit = memory * 2**20

    def used(self):
        return self.cgroup.memory()[0]

    def reset_peak(self):
        if not self.cgroup.v2:
            with open(os.path.join(self.cgroup.path, "memory.max_usage_in_bytes"), "w") as f:
                f.write("0")

    def peak(self):
        return self.cgroup.memory()[2]

    def oom_kills(self):
        name = "memory.events" if self.cgroup.v2 else "memory.oom_control"
        with open(os.path.join(self.cgroup.path, name)) as f:
            fields = dict(line.split() for line in f if len(line.split()) == 2)
        return int(fields.get("oom_kill", 0))

    def workers(self, count):
        """Start create-start.py COUNT on zoo1 and wait until every elector has a znode."""
        ssh("zoo1", f"scripts/create-start.py {count}", env=self.env)
        wait_until(lambda: len(ssh("zoo1", "scripts/get.py", env=self.env).stdout.splitlines())
                   >= count + 1, 60, interval=0.5, what=f"{count} electors")

    def stop_workers(self):
        ssh("zoo1", "scripts/create-stop.py", env=self.env)

    def zkcli(self):
        ssh("zoo1", "/usr/share/zookeeper/bin/zkCli.sh ls / >/dev/null 2>&1", env=self.env)


def settle(machine):
    """Memory in use once it stops moving (the page cache and the JVM settle)."""
    readings = []

    def steady():
        readings.append(machine.used())
        return len(readings) > 4 and max(readings[-4:]) - min(readings[-4:]) < 2**20
    wait_until(steady, 30, interval=0.5, what="memory use to settle")
    return readings[-1]


def memory_rows(memory):
    machine = Machine(memory)
    lab("down", env=machine.env)
    try:   # the up too: stopped during it, the lab goes down all the same
        lab("up", timeout=900, env=machine.env)
        zookeeper = settle(machine)
        machine.reset_peak()
        machine.zkcli()
        zkcli = machine.peak() - zookeeper
        watcher = OnMachine("zoo1", "watch.py", env=machine.env)
        watcher.wait_for(lambda m: m.startswith("watching /zkdemo"), timeout=60)
        with_watch = settle(machine)
        machine.workers(4)
        four = settle(machine)
        machine.stop_workers()
        machine.workers(8)
        eight = settle(machine)
        machine.stop_workers()
        per_worker = (eight - four) / 4
        room = 0.9 * machine.limit - with_watch - zkcli
        fits = max(0, int(room // per_worker))
        # Check it: that many workers, watch.py and a zkCli.sh session at once.
        kills = machine.oom_kills()
        machine.reset_peak()
        if fits:
            machine.workers(fits)
        machine.zkcli()
        settle(machine)
        peak = machine.peak()
        survived = machine.oom_kills() == kills and watcher.proc.poll() is None
        if fits:
            machine.stop_workers()
        watcher.stop()
        return {"limit_mb": memory, "zookeeper_mb": mb(zookeeper), "zkcli_adds_mb": mb(zkcli),
                "watch_py_adds_mb": mb(with_watch - zookeeper),
                "worker_adds_mb": mb(per_worker), "workers_that_fit": fits,
                "checked_peak_mb": mb(peak), "checked_without_oom": survived}
    finally:
        with cleaning_up():
            lab("down", env=machine.env)


def partition_row():
    machine = Machine(256)
    lab("down", env=machine.env)
    electors = []
    try:   # the up too: stopped during it, the lab goes down all the same
        lab("up", timeout=900, env=machine.env)
        leader = zk_leader(machine.env)
        for name in [leader] + [m for m in MACHINES if m != leader]:
            elector = OnMachine(name, "create.py", "600", "--session-timeout", str(SESSION_S),
                                env=machine.env)
            electors.append(elector)
            elector.wait_for(lambda m: m == "became leader" or m.startswith("following "),
                             timeout=60)
        cut = utc_now()
        lab("partition", leader, env=machine.env)
        new_leader = wait_until(lambda: next(
            (m for m in MACHINES if m != leader and zk_mode(machine, m) == "leader"), None),
            120, interval=0.1, what="a new ZooKeeper leader")
        zk_s = (utc_now() - cut).total_seconds()
        wait_until(lambda: any(leading(e.lines) for e in electors[1:]), 120,
                   interval=0.1, what="a new create.py leader")
        became = min(stamp(line) for e in electors[1:] for line in e.lines
                     if message(line) == "became leader")
        return {"cut": leader, "new_zookeeper_leader": new_leader,
                "to_zookeeper_leader_s": round(zk_s, 1),
                "to_create_py_leader_s": round((became - cut).total_seconds(), 1),
                "session_timeout_s": SESSION_S}
    finally:
        with cleaning_up():
            for elector in electors:
                elector.kill()
            lab("down", env=machine.env)


def zk_mode(machine, name):
    return srvr(name, env=machine.env).get("Mode")


def lab_rows():
    """The lab's figures, or why they could not be had."""
    gone = what_is_missing()
    if gone:
        return {"not_measured": f"the lab cannot run here: {', '.join(gone)} missing"}
    started = time.monotonic()
    rows = {"memory_256": memory_rows(256), "memory_512": memory_rows(512),
            "partition": partition_row(), "chaos": chaos_row()}
    rows["took_s"] = round(time.monotonic() - started)
    return rows



def chaos_row(seed=30, minutes=2, name="zkdbchaos"):
    """A chaos run's figures (provision/chaos.py writes them to chaos.json)."""
    env = dict(os.environ, ZKDEMO_LAB=name)
    # Stopped (SIGTERM, Ctrl-C), the bench lets chaos.py heal and take its lab down.
    try:
        run = run_to_its_end([sys.executable, os.path.join(REPO, "provision", "chaos.py"),
                              "--seed", str(seed), "--minutes", str(minutes)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             timeout=1800, stdin=subprocess.DEVNULL)
    finally:
        with cleaning_up():   # chaos.py killed at its time limit leaves its lab up
            lab("down", env=env)
    with open(os.path.join(REPO, ".zkdemo", f"chaos-{name}", "chaos.json")) as f:
        figures = json.load(f)
    if run.returncode != 0:
        raise AssertionError(f"chaos.py failed: {figures.get('failures') or run.stderr[-500:]}")
    return figures
