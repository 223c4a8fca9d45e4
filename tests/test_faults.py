"""Faults: servers killed, paused and restarted under running electors.

Each scenario runs several create.py processes (restarted as they exit, with
short lifetimes so leadership keeps moving) and watch.py against a scratch
ensemble, breaks the ensemble, and then checks

- with the election checker, that no two leadership terms overlapped and no
  process exited while claiming leadership;
- that no create.py crashed (a traceback, or an exit other than done, Ctrl-C,
  SIGTERM, or "cannot reach ZooKeeper" while there was no quorum);
- that watch.py saw every znode the electors created (or said it folded it),
  and that its view at the end is the real list of children.

The tick is 200 ms, so sessions of 2 s are allowed (2 to 20 ticks).
"""

import datetime
import random
import re
import signal
import threading

import pytest

from conftest import TICK_MS, ScriptProcess, utc_now, wait_until
from history import ElectionError, check, leading, stamp

SESSION_S = 2.0


class Electors:
    """`slots` create.py processes, each started again when it exits."""

    def __init__(self, hosts, slots, lifetime=(0.5, 2.0), session_timeout=SESSION_S):
        self.hosts, self.lifetime, self.session_timeout = hosts, lifetime, session_timeout
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.running = {}
        self.done = []          # processes that ended by themselves or were stopped
        self.killed = {}        # process -> the time its znode was deleted
        self.threads = [threading.Thread(target=self._slot, args=(i,), daemon=True)
                        for i in range(slots)]
        for thread in self.threads:
            thread.start()

    def _slot(self, i):
        rng = random.Random(i)
        while not self.stopping.is_set():
            process = ScriptProcess(
                "create.py", f"{rng.uniform(*self.lifetime):.2f}",
                "--session-timeout", str(self.session_timeout),
                "--source", f"127.0.0.{20 + i}", hosts=self.hosts)
            process.source = f"127.0.0.{20 + i}"
            with self.lock:
                self.running[i] = process
            process.proc.wait()
            process._reader.join(5)
            process.stderr = process.proc.stderr.read()
            with self.lock:
                del self.running[i]
                self.done.append(process)

    def stop(self):
        self.stopping.set()
        for thread in self.threads:
            while thread.is_alive():
                with self.lock:
                    for process in self.running.values():
                        if process.proc.poll() is None:
                            process.proc.send_signal(signal.SIGTERM)
                thread.join(0.2)

    def all(self):
        with self.lock:
            return self.done + list(self.running.values())

    def leader(self):
        """The running process whose last word is `became leader`, if any."""
        with self.lock:
            running = list(self.running.values())
        return next((p for p in running if leading(p.lines) and p.proc.poll() is None), None)

    def became(self, after=None):
        """Timestamps of every `became leader` line (after a time, if given)."""
        times = [stamp(line) for p in self.all() for line in list(p.lines)
                 if line[24:] == "became leader"]
        return sorted(t for t in times if after is None or t > after)

    def check(self):
        """Run the election checker; return the number of terms checked."""
        processes = []
        for p in self.all():
            lines = list(p.lines)
            if p in self.killed:  # SIGKILLed: its term ended when its znode went
                lines.append(self.killed[p].isoformat(sep=" ", timespec="milliseconds")
                             + " no longer leader (killed; its session expired)")
            processes.append((f"pid {p.proc.pid}", lines, p.proc.poll() is not None))
        try:
            return len(check(processes))
        except ElectionError as error:
            involved = [(n, lines) for n, lines, _ in processes if n in str(error)]
            raise ElectionError(f"{error}\n" + "\n".join(
                f"--- {n}:\n" + "\n".join(lines) for n, lines in involved)) from None

    def crashes(self, outage=False):
        bad = []
        for p in self.done:
            code, err = p.proc.returncode, p.stderr
            if p in self.killed:
                continue
            # -15: SIGTERM from stop() came before Python had even set its handler
            clean = code in (0, 143, -signal.SIGTERM) and err == ""
            unreachable = (outage and code == 1 and len(err.splitlines()) == 1
                           and err.startswith(("create.py: cannot reach",
                                               "create.py: nothing listens")))
            if not (clean or unreachable) or "Traceback" in err:
                bad.append((p.proc.pid, code, err))
        return bad

    def created(self):
        return {m.split()[1] for p in self.all() for m in p.messages()
                if m.startswith("created /zkdemo/node-")}


def now():
    return utc_now()


def watch_view(watcher):
    """What watch.py's lines say /zkdemo holds, and how many changes it folded."""
    view, seen, folded = set(), set(), 0
    for message in watcher.messages():
        words = message.split()
        if words[0] in ("present", "created") and len(words) > 1:
            path = words[1].rstrip(",")
            seen.add(path)
            if "deleted before it could be read" not in message:
                view.add(path)
        elif words[0] == "deleted":
            view.discard(words[1])
        elif "folded: created and deleted" in message:
            folded += int(words[0])
    return view, seen, folded


@pytest.fixture
def fault_run(scratch_ensemble, zk_factory, scripts, reliability):
    """A scratch ensemble with watch.py running; checks everything at the end."""
    scratch_ensemble.up()
    scratch_ensemble.wait_serving()
    zk = zk_factory(scratch_ensemble.hosts)
    zk.ensure_path("/zkdemo")
    watcher = scripts("watch.py", hosts=scratch_ensemble.hosts)
    watcher.wait_for(lambda m: m.startswith("watching /zkdemo"))
    run = {"ensemble": scratch_ensemble, "zk": zk, "watcher": watcher, "electors": None,
           "outage": False}
    yield run
    electors = run["electors"]
    electors.stop()
    terms = electors.check()
    assert electors.crashes(run["outage"]) == []
    # watch.py ends with the real children of /zkdemo, and saw every elector's znode.
    view = wait_until(lambda: (v := watch_view(watcher))[0] == set(
        f"/zkdemo/{c}" for c in zk.get_children("/zkdemo")) and v, 60,
        what="watch.py's view to equal the real children")
    _, seen, folded = view
    lost = max(0, len(electors.created() - seen) - folded)
    assert lost == 0, f"watch.py missed {sorted(electors.created() - seen)}"
    assert watcher.stop(signal.SIGINT) == 130 and watcher.stderr == ""
    reliability["scenarios"] += 1
    reliability["leadership_terms_checked"] += terms
    reliability["electors_run"] += len(electors.all())
    reliability["znodes_created"] += len(electors.created())
    reliability["events_folded"] += folded
    reliability["events_lost"] += lost


def test_one_server_killed_and_restarted(fault_run):
    ensemble = fault_run["ensemble"]
    electors = fault_run["electors"] = Electors(ensemble.hosts, slots=5)
    wait_until(lambda: len(electors.became()) >= 3, 30, what="elections")
    victim = ensemble.leader()
    ensemble.run("kill", victim[-1])
    killed_at = now()
    wait_until(lambda: len(electors.became(after=killed_at)) >= 3, 60,
               what="elections with a server down")
    ensemble.run("start", victim[-1])
    ensemble.wait_serving()
    back_at = now()
    wait_until(lambda: len(electors.became(after=back_at)) >= 3, 60,
               what="elections after the restart")


def test_pausing_the_leaders_server_the_leader_keeps_or_reearns_leadership(fault_run):
    ensemble = fault_run["ensemble"]
    electors = fault_run["electors"] = Electors(ensemble.hosts, slots=3, lifetime=(25, 30),
                                                session_timeout=4.0)
    leader = wait_until(electors.leader, 30, what="a leader")
    server = wait_until(lambda: ensemble.server_of(leader.source), 10, what="its server")
    ensemble.run("pause", server[-1])
    try:
        # Whichever comes first: kazoo's read timeout (2/3 of the session
        # timeout after the last answer) or the lease (0.9 of it after the
        # write committed before the last one).
        leader.wait_for(lambda m: m == "no longer leader (connection suspended)"
                        or m.startswith("no longer leader (ZooKeeper has not confirmed"), 30)
        leader.wait_for(lambda m: m == "reconnected (same session)", 30)
        # Its znode is still the lowest, so it leads again, and nobody led meanwhile.
        wait_until(lambda: leader.messages().count("became leader") >= 2, 30,
                   what="the leader to lead again")
        assert electors.became() == sorted(stamp(line) for line in leader.lines
                                           if line[24:] == "became leader")
    finally:
        ensemble.run("resume", server[-1])


def test_quorum_lost_no_one_leads_and_exactly_one_leads_after(fault_run):
    ensemble = fault_run["ensemble"]
    fault_run["outage"] = True
    electors = fault_run["electors"] = Electors(ensemble.hosts, slots=5)
    wait_until(lambda: len(electors.became()) >= 3, 30, what="elections")
    ensemble.run("pause", "1")
    ensemble.run("kill", "2")
    lost_at = now()
    try:
        # Every leader steps down before its session could expire on the servers.
        deadline = lost_at + datetime.timedelta(seconds=SESSION_S)
        wait_until(lambda: electors.leader() is None, SESSION_S * 3, what="leaders to step down")
        for p in electors.all():
            for line in p.lines:
                if line[24:].startswith("no longer leader") and stamp(line) > lost_at:
                    assert stamp(line) <= deadline, line
        # Nobody claims leadership while there is no quorum: watch for claims
        # over two session timeouts (an observation window, not a wait for a state).
        quiet_from = now()
        wait_until(lambda: now() - quiet_from > datetime.timedelta(seconds=SESSION_S * 2),
                   SESSION_S * 3, interval=0.2, what="time without a quorum")
        assert electors.became(after=lost_at + datetime.timedelta(seconds=SESSION_S)) == []
    finally:
        ensemble.run("resume", "1")
        ensemble.run("start", "2")
    ensemble.wait_serving()
    back_at = now()
    wait_until(lambda: len(electors.became(after=back_at)) >= 2, 60,
               what="elections after the quorum came back")
    # One leads again (and the checker proves never two at a time).
    wait_until(electors.leader, 30, what="a leader after recovery")


def test_leader_killed_successor_leads_after_the_session_expires(fault_run):
    ensemble, watcher = fault_run["ensemble"], fault_run["watcher"]
    electors = fault_run["electors"] = Electors(ensemble.hosts, slots=3, lifetime=(25, 30))
    leader = wait_until(electors.leader, 30, what="a leader")
    znode = next(m.split()[1] for m in leader.messages() if m.startswith("created "))
    wait_until(lambda: any(m.startswith(f"following {znode}")
                           for p in electors.all() for m in p.messages()), 30,
               what="a follower behind the leader")
    leader.proc.kill()
    killed_at = now()
    deleted = wait_until(lambda: next((line for line in watcher.lines
                                       if line[24:] == f"deleted {znode}"), None),
                         SESSION_S + 5, what="the old leader's znode to go")
    successor_line = wait_until(lambda: next(iter(electors.became(after=killed_at)), None),
                                SESSION_S + 5, what="a successor")
    # Its term ended when its znode went: the first to hear of that tells when.
    electors.killed[leader] = min([stamp(deleted)] + [
        stamp(line) for p in electors.all() for line in list(p.lines)
        if line[24:] == f"woken: {znode} deleted"])
    waited = (successor_line - killed_at).total_seconds()
    assert waited <= SESSION_S + 2 * TICK_MS / 1000 + 0.5, f"took {waited:.2f} s"
    assert successor_line >= stamp(deleted) - datetime.timedelta(milliseconds=50)
    assert waited >= SESSION_S / 2, f"led {waited:.2f} s after the kill: session still alive"


def test_rolling_restart_watch_view_matches_the_tree(fault_run):
    ensemble = fault_run["ensemble"]
    electors = fault_run["electors"] = Electors(ensemble.hosts, slots=4)
    wait_until(lambda: len(electors.became()) >= 2, 30, what="elections")
    for server in ("1", "2", "3"):
        ensemble.run("stop", server)
        others = [f"zoo{n}" for n in "123" if n != server]
        ensemble.wait_serving(servers=others)
        ensemble.run("start", server)
        ensemble.wait_serving()
        restarted_at = now()
        wait_until(lambda: len(electors.became(after=restarted_at)) >= 1, 60,
                   what=f"an election after restarting zoo{server}")


# --- the checker itself ------------------------------------------------------------

def lines(*events):
    return [f"2026-11-24 10:00:{second:06.3f} {message}" for second, message in events]


def test_the_checker_accepts_a_clean_handover():
    a = lines((1, "became leader"), (2, "no longer leader (exiting)"))
    b = lines((2, "became leader"), (3, "no longer leader (exiting)"))
    assert len(check([("a", a, True), ("b", b, True)])) == 2


@pytest.mark.parametrize("a, b, a_exited, error", [
    (lines((1, "became leader"), (3, "no longer leader (exiting)")),
     lines((2, "became leader"), (4, "no longer leader (exiting)")), True, "overlap"),
    (lines((1, "became leader")), lines((2, "became leader")), False, "overlap"),
    (lines((1, "became leader")), [], True, "exited while still claiming"),
    (lines((1, "became leader"), (2, "became leader")), [], False, "twice"),
])
def test_the_checker_catches_two_leaders_and_exits_while_leading(a, b, a_exited, error):
    with pytest.raises(ElectionError, match=error):
        check([("a", a, a_exited), ("b", b, False)])


def test_a_paused_leader_whose_session_expired_steps_down_and_rejoins(ensemble, zk, scripts):
    """SIGSTOP the leader process past its session timeout: ZooKeeper expires
    the session and its znode, the next in line leads. When the process runs
    again, it must say so first, then queue up again with a new znode. (While
    it was frozen it could not know: that is what fencing tokens are for.)"""
    zk.ensure_path("/zkdemo")
    first = scripts("create.py", "60", "--session-timeout", "1", hosts=ensemble.hosts)
    first.wait_for(lambda m: m == "became leader")
    second = scripts("create.py", "60", "--session-timeout", "1", hosts=ensemble.hosts)
    second.wait_for(lambda m: m.startswith("following "))
    old = next(m.split()[1] for m in first.messages() if m.startswith("created "))
    first.proc.send_signal(signal.SIGSTOP)
    try:
        second.wait_for(lambda m: m == "became leader", timeout=15)
    finally:
        first.proc.send_signal(signal.SIGCONT)
    first.wait_for(lambda m: m.startswith("session lost"), timeout=15)
    new = first.wait_for(lambda m: m.startswith("created ") and m.split()[1] != old,
                         timeout=15).split()[1]
    first.wait_for(lambda m: m.startswith("following "), timeout=15)
    said = first.messages()
    # It steps down first thing, before it learns the session is gone: its
    # lease ran out while it was frozen, or its connection was suspended.
    stepped_down = next(i for i, m in enumerate(said) if m.startswith("no longer leader ("))
    assert said[stepped_down] == "no longer leader (connection suspended)" or re.fullmatch(
        r"no longer leader \(ZooKeeper has not confirmed the session for [0-9.]+ s: "
        r"cut off from the majority\?\)", said[stepped_down]), said
    assert stepped_down < \
        next(i for i, m in enumerate(said) if m.startswith("session lost")) < \
        said.index(f"created {new}"), said
    assert zk.exists(old) is None and zk.exists(new)
    assert first.stop() == 143 and second.stop() == 143
