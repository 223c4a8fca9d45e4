"""The moments just after a quorum is lost or comes back, when a server's own
word and a client's connection state are behind the truth.

- a sync through a cut-off follower waits, and one through a cut-off leader
  is answered at once (for up to syncLimit ticks);
- kazoo forgets every watch when its connection goes, and sets none again;
- status.py asked only a leader whose followers are gone says "quorum"
  until the leader notices (its view, up to syncLimit ticks late);
- status.py must not call it a quorum while a leader whose followers are gone
  still answers `Mode: leader` (it does for up to syncLimit ticks);
- create.py back in its session after its server came back still watches
  its own znode, and steps down at once when another client deletes it;
- create.py stopped while its connection is still recovering must delete its
  znode as soon as ZooKeeper answers again, or else say that it stays until
  the session expires, and the next elector takes over accordingly;
- clients come back into their own sessions soon after a long outage ends;
- status.py must name a leader that hangs while its followers still follow it,
  and scripts stopped while every server hangs exit at once.
"""

import argparse
import datetime
import importlib.util
import os
import queue
import re
import signal
import sys
import threading
import time

import pytest

from conftest import REPO, ScriptProcess, run_script, wait_until, utc_now
from history import check
from test_scripts import line_time

SYNC_LIMIT = 5   # config/zoo.cfg


def status(cluster):
    result = run_script("status.py", "--timeout", "1", hosts=cluster.hosts)
    assert result.stderr == ""
    return result.returncode, [line.split(" ", 2)[2] for line in result.stdout.splitlines()]


def mode_line(lines, cluster, name):
    address = cluster.address(name)
    return next(line for line in lines if line.startswith(address + " "))


def test_status_is_not_fooled_by_a_leader_whose_followers_are_gone(scratch_ensemble,
                                                                   reliability):
    # A tick of 1 s: the leader keeps saying "leader" up to 5 s after it is
    # left alone, long enough to ask it for certain.
    scratch_ensemble.up(tick_ms=1000)
    modes = scratch_ensemble.wait_serving()
    leader = scratch_ensemble.leader()
    followers = [name for name in modes if name != leader]
    code, lines = status(scratch_ensemble)
    assert code == 0 and lines[-1].startswith("quorum: "), lines

    # Paused followers: their connections stay open, so the leader counts them
    # synced until their ack deadline passes; only they can tell, by not answering.
    pids = scratch_ensemble.pids()
    for name in followers:
        os.kill(pids[name], signal.SIGSTOP)
    code, lines = status(scratch_ensemble)
    assert mode_line(lines, scratch_ensemble, leader).split()[1] == "leader", lines
    assert code == 1, lines
    assert lines[-1].startswith(f"no quorum: {scratch_ensemble.address(leader)} still says "
                                "leader, but only 1 of 3 servers is in step with it"), lines
    for name in followers:
        os.kill(pids[name], signal.SIGCONT)
    scratch_ensemble.wait_serving()
    wait_until(lambda: status(scratch_ensemble)[0] == 0, 30, what="a quorum again")

    # Killed followers: asked at once, and again after the leader gives up.
    leader = scratch_ensemble.leader()
    followers = [name for name in modes if name != leader]
    pids = scratch_ensemble.pids()
    for name in followers:
        os.kill(pids[name], signal.SIGKILL)
    code, lines = status(scratch_ensemble)
    assert code == 1, lines
    assert not any(line.startswith("quorum") for line in lines), lines
    if mode_line(lines, scratch_ensemble, leader).split()[1] == "leader":
        reliability["status_asked_while_a_lone_leader_said_leader"] += 1
        assert "still says leader, but only 1 of 3 servers is in step" in lines[-1], lines
    wait_until(lambda: "not serving" in mode_line(status(scratch_ensemble)[1],
                                                  scratch_ensemble, leader),
               SYNC_LIMIT * 1 + 10, what="the lone leader to give up")
    code, lines = status(scratch_ensemble)
    assert code == 1
    assert lines[-1] == ("no quorum: no server serves, so clients can neither read nor write "
                         "(0 of 3 serving, 1 answering)")


def test_a_cut_off_follower_holds_a_sync_but_a_cut_off_leader_answers_it_alone(
        scratch_ensemble, zk_factory):
    """sync() is answered once the server has caught up with its leader, so
    a follower that cannot reach its leader holds it. A leader that cannot
    reach its followers does not know it yet (for up to syncLimit ticks) and
    answers a sync by itself, while a write there waits for a quorum: a
    sync-then-read through a cut-off leader can be stale."""
    scratch_ensemble.up(tick_ms=1000)   # syncLimit 5: the leader gives up after 5 s
    modes = scratch_ensemble.wait_serving()
    leader = scratch_ensemble.leader()
    followers = [name for name in modes if name != leader]
    on_leader = zk_factory(scratch_ensemble.address(leader))
    on_follower = zk_factory(scratch_ensemble.address(followers[0]))
    pids = scratch_ensemble.pids()

    def answered_within(async_result, seconds):
        done = threading.Event()
        async_result.rawlink(lambda _: done.set())
        return done.wait(seconds)   # an observation window: was it answered by then?

    os.kill(pids[leader], signal.SIGSTOP)
    try:
        assert not answered_within(on_follower.sync_async("/"), 2), \
            "a follower without its leader answered a sync"
    finally:
        os.kill(pids[leader], signal.SIGCONT)
    scratch_ensemble.wait_serving()
    assert scratch_ensemble.leader() == leader

    for name in followers:
        os.kill(pids[name], signal.SIGSTOP)
    try:
        assert answered_within(on_leader.sync_async("/"), 2), \
            "the leader held a sync without its followers"
        assert not answered_within(on_leader.create_async("/zkdemo-sync-edge"), 2), \
            "a write committed without a quorum"
    finally:
        for name in followers:
            os.kill(pids[name], signal.SIGCONT)


def test_kazoo_drops_every_watch_when_the_connection_goes_and_sets_none_again(
        scratch_ensemble, zk_factory):
    """What watch.py and create.py are built around: when the connection is
    suspended kazoo calls each watch once with a NONE event and forgets it;
    back in the same session, a change fires nothing until the client reads
    again with a watch (the Java client would re-send its watches)."""
    scratch_ensemble.up()
    scratch_ensemble.wait_serving()
    writer = zk_factory(scratch_ensemble.hosts)
    writer.create("/watched", b"1")
    client = zk_factory(scratch_ensemble.address("zoo1"))
    events = queue.Queue()
    client.get("/watched", watch=events.put)
    session = client.client_id[0]
    scratch_ensemble.run("kill", "1")
    assert events.get(timeout=30).type == "NONE"
    scratch_ensemble.run("start", "1")
    wait_until(lambda: client.connected, 60, what="the client back")
    assert client.client_id[0] == session
    writer.set("/watched", b"2")
    # A marker after it: ZooKeeper sends notifications in the order of the
    # writes, and kazoo runs watches in order, so a watch on /watched that
    # still existed would be called first.
    client.exists("/marker", watch=events.put)
    writer.create("/marker")
    first = events.get(timeout=30)
    assert (first.path, first.type) == ("/marker", "CREATED"), first
    client.get("/watched", watch=events.put)
    writer.set("/watched", b"3")
    assert events.get(timeout=30).type == "CHANGED"


def load_script(name):
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "scripts",
                                                                     f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_status_tells_an_election_from_a_lost_quorum(scratch_ensemble, capsys):
    """Just after the leader is killed the other two elect one of themselves,
    which takes a second or so, and meanwhile neither serves: status.py says
    no leader yet, not that the quorum is lost. Its own judgement, asked over
    and over (in this process: a new python3 each time could miss the second)."""
    status_py = load_script("status")
    args = argparse.Namespace(hosts=scratch_ensemble.hosts, timeout=2.0, source=None)
    scratch_ensemble.up()
    scratch_ensemble.wait_serving()
    os.kill(scratch_ensemble.pids()[scratch_ensemble.leader()], signal.SIGKILL)
    verdicts = []

    def judged_quorum():
        status_py.report(args)
        verdicts.append(capsys.readouterr().out.splitlines()[-1].split(" ", 2)[2])
        return verdicts[-1].startswith("quorum: ")
    wait_until(judged_quorum, 30, interval=0.02, what="the two left to elect a leader")
    assert any(v.startswith("no leader yet: a majority answers but no server serves, so they "
                            "are electing one") and v.endswith("(0 of 3 serving, 2 answering)")
               for v in verdicts), verdicts
    # A poll in which the servers were too busy to answer within the timeout
    # is judged on what answered; with a majority answering, it is no loss.
    assert not any(v.startswith("no quorum: no server serves") and
                   not v.endswith(("0 answering)", "1 answering)")) for v in verdicts), verdicts


def test_status_asked_only_the_leader_says_quorum_for_a_while_after_its_followers_stop(
        scratch_ensemble):
    """status.py's quorum is the leader's view: with its followers paused (as
    if cut off), a leader still counts them synced until their connections
    time out, so asked only the leader, status.py says "quorum" although no
    write could commit. Within syncLimit ticks the leader gives up."""
    scratch_ensemble.up(tick_ms=1000)   # syncLimit 5: a 5 s window
    modes = scratch_ensemble.wait_serving()
    leader = scratch_ensemble.leader()
    followers = [name for name in modes if name != leader]
    pids = scratch_ensemble.pids()
    only_leader = scratch_ensemble.address(leader)
    for name in followers:
        os.kill(pids[name], signal.SIGSTOP)
    try:
        result = run_script("status.py", "--timeout", "1", hosts=only_leader)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines()[-1].split(" ", 2)[2].startswith(
            f"quorum: {only_leader} leads, 3 of 3 servers in step"), result.stdout
        wait_until(lambda: run_script("status.py", "--timeout", "1",
                                      hosts=only_leader).returncode == 1,
                   SYNC_LIMIT * 1 + 10, what="the leader to give up")
    finally:
        for name in followers:
            os.kill(pids[name], signal.SIGCONT)


@pytest.fixture
def electors(scratch_ensemble):
    """start(session_timeout): create.py on zoo1 alone, once it leads, and a
    second on zoo2 alone, once it follows; both are killed at the end."""
    started = []

    def start(session_timeout):
        scratch_ensemble.up(tick_ms=500)   # sessions of up to 10 s
        scratch_ensemble.wait_serving()
        pair = []
        for server in ("zoo1", "zoo2"):
            process = ScriptProcess("create.py", "120", "--session-timeout", str(session_timeout),
                                    "--hosts", scratch_ensemble.address(server))
            started.append(process)
            pair.append(process)
            if server == "zoo1":
                process.wait_for(lambda m: m == "became leader")
                path = next(m.split()[1] for m in process.messages() if m.startswith("created "))
        pair[1].wait_for(lambda m: m == f"following {path}")
        return pair[0], pair[1], path
    yield start
    for process in started:
        process.kill()


def test_a_leader_stopped_while_reconnecting_hands_over(scratch_ensemble, electors):
    """Its only server dies under it, then it is told to stop: it waits for
    ZooKeeper, deletes its znode when its server is back, and the next elector
    takes over then, long before the session could have expired."""
    first, second, path = electors(session_timeout=10)
    scratch_ensemble.run("kill", "1")
    first.wait_for(lambda m: m == "no longer leader (connection suspended)")
    first.proc.send_signal(signal.SIGTERM)
    first.wait_for(lambda m: m.startswith("exiting while the connection is down: waiting up to "))
    scratch_ensemble.run("start", "1")
    assert first.wait(timeout=30) == 143
    assert first.stderr == ""
    assert (f"deleted {path}: ZooKeeper answered again, the next in line takes over now"
            in first.messages()), first.lines
    second.wait_for(lambda m: m == "became leader")
    suspended = line_time(first, "no longer leader (connection suspended)")
    took_over = line_time(second, "became leader")
    assert (took_over - suspended).total_seconds() < 10, "it waited for the session to expire"
    check([("first", first.lines, True), ("second", second.lines, False)])
    assert second.stop() == 143


def test_a_leader_back_from_a_lost_connection_still_hears_its_znode_deleted(
        scratch_ensemble, electors, zk_factory):
    """kazoo drops every watch when the connection goes. A leader back in its
    session must watch its own znode again: deleted by another client, it
    steps down at once (not when its lease runs out) and joins at the back,
    and the next in line leads. (Both learn of the delete from their watches
    at about the same moment: a deletion by another client is news to both.)"""
    first, second, path = electors(session_timeout=10)
    scratch_ensemble.run("kill", "1")
    first.wait_for(lambda m: m == "no longer leader (connection suspended)")
    scratch_ensemble.run("start", "1")
    first.wait_for(lambda m: m == "reconnected (same session)", timeout=30)
    wait_until(lambda: first.messages().count("became leader") == 2, 30,
               what="the leader to lead again in its session")
    zk_factory(scratch_ensemble.address("zoo2")).delete(path)
    deleted_at = time.monotonic()
    first.wait_for(lambda m: m.startswith("no longer leader") and "exiting" not in m
                   and m != "no longer leader (connection suspended)", timeout=30)
    # Well before its lease (0.9 x 10 s) could have run out.
    assert time.monotonic() - deleted_at < 4, first.lines
    said = [m for m in first.messages() if m.startswith("no longer leader")]
    assert said[-1] == f"no longer leader (another client deleted {path})", first.lines
    second.wait_for(lambda m: m == "became leader")
    first.wait_for(lambda m: m.startswith("following "))


def test_a_leader_that_cannot_reach_zookeeper_says_its_znode_waits_for_expiry(
        scratch_ensemble, electors, zk_factory):
    first, second, path = electors(session_timeout=4)
    scratch_ensemble.run("kill", "1")   # and it stays down
    first.wait_for(lambda m: m == "no longer leader (connection suspended)")
    first.proc.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 143
    said = [m for m in first.messages() if m.startswith("ZooKeeper did not answer")]
    assert said == [f"ZooKeeper did not answer: {path} stays until ZooKeeper expires the "
                    "session (4 s after it last heard from us)"], first.lines

    second.wait_for(lambda m: m == "became leader", timeout=30)
    assert zk_factory(scratch_ensemble.address("zoo2")).exists(path) is None
    # The session (4 s) was heard from at most a third of it before the kill.
    suspended = line_time(first, "no longer leader (connection suspended)")
    assert (line_time(second, "became leader") - suspended).total_seconds() >= 2, \
        "the successor took over before the session could have expired"
    check([("first", first.lines, True), ("second", second.lines, False)])
    assert second.stop() == 143


def test_the_lease_counts_from_the_write_before_the_last_only_when_they_were_far_apart():
    """create.py's Lease, by itself (docs/reliability.md has the argument): a
    commit proves the leader heard of the write before it only if the follower
    got them more than half a tick apart, which the client knows when the
    later one was sent a quarter of the session timeout after the earlier
    one's answer came."""
    spec = importlib.util.spec_from_file_location("create", os.path.join(REPO, "scripts",
                                                                         "create.py"))
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    create = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(create)
    lease, timeout = create.Lease(), 4.0
    lease.committed(10.0, 10.01, timeout)        # a renewal
    assert lease.start is None                   # nothing proven yet
    lease.committed(10.02, 10.03, timeout)       # a create right after it
    assert lease.start is None                   # the two may have travelled together
    lease.committed(11.4, 11.41, timeout)        # the next renewal, a third later
    assert lease.start == 10.02
    assert lease.end(timeout) == 10.02 + 0.9 * timeout
    lease.connected(12.0)                        # a new session, committed by the leader
    assert lease.start == 12.0


def test_the_lease_and_the_wait_use_the_timeout_the_server_granted(scratch_ensemble, electors):
    """Asked for 60 s, with 500 ms ticks the servers grant 10 s (20 ticks):
    create.py must count with what was granted, not with what it asked for."""
    first, second, path = electors(session_timeout=60)
    scratch_ensemble.run("kill", "1")   # and it stays down
    first.wait_for(lambda m: m == "no longer leader (connection suspended)")
    first.proc.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 143
    waited = next(m for m in first.messages() if m.startswith("exiting while"))
    assert 0 < float(waited.split("waiting up to ")[1].split()[0]) <= 10, waited
    assert (f"ZooKeeper did not answer: {path} stays until ZooKeeper expires the session "
            "(10 s after it last heard from us)") in first.messages(), first.lines


def test_sessions_outlive_an_outage_of_four_session_timeouts(scratch_ensemble, scripts,
                                                             zk_factory):
    """Two of three servers down for four session timeouts: no session can
    expire without a leader, and the new one gives every session a fresh
    timeout, so a client that keeps trying (about once a second) is back in
    its own session soon after the quorum returns, however long it was gone."""
    scratch_ensemble.up(tick_ms=200)   # sessions of 10 s are granted 20 ticks: 4 s
    scratch_ensemble.wait_serving()
    session = 4.0
    # watch.py knows only zoo1, which comes back last: what is written between
    # the quorum's return and zoo1's is what it missed.
    watch = scripts("watch.py", "--hosts", scratch_ensemble.address("zoo1"))
    elector = scripts("create.py", "600", hosts=scratch_ensemble.hosts)
    elector.wait_for(lambda m: m == "became leader")
    path = next(m.split()[1] for m in elector.messages() if m.startswith("created "))
    watch.wait_for(lambda m: m.startswith(("created " + path, "present " + path)))

    pids = scratch_ensemble.pids()
    for name in ("zoo1", "zoo2"):
        os.kill(pids[name], signal.SIGKILL)
    outage_ends = time.monotonic() + 4 * session
    # zoo3 serves on alone until it notices (syncLimit ticks); then it drops
    # its clients, and the elector, wherever it was, steps down.
    wait_until(lambda: scratch_ensemble.modes()["zoo3"] not in ("leader", "follower"), session,
               what="zoo3 to stop serving")

    def leading():
        said = [m for m in elector.messages() if m == "became leader"
                or m.startswith("no longer leader")]
        return said[-1] == "became leader"
    wait_until(lambda: not leading(), session, what="the elector to step down")

    def outage_over():
        # Meanwhile nobody may claim leadership: there is no quorum.
        assert not leading(), elector.lines
        return time.monotonic() >= outage_ends
    wait_until(outage_over, 5 * session, interval=0.5, what="the outage's end")

    scratch_ensemble.run("start", "2")   # returns once zoo2 serves: a quorum again
    quorum_back = utc_now()
    writer = zk_factory(scratch_ensemble.address("zoo3"))
    writer.create("/zkdemo/made-while-watch-was-away", b"hello")
    scratch_ensemble.run("start", "1")

    elector.wait_for(lambda m: m == "reconnected (same session)", timeout=session)
    watch.wait_for(lambda m: m == "reconnected (same session)", timeout=session)
    # Back within about 2 s: kazoo's own policy, doubling its wait up to an
    # hour, would still sleep out the outage's last attempt (6 to 12 s).
    back = line_time(elector, "reconnected (same session)") - quorum_back
    assert back.total_seconds() < 3, elector.lines
    watch.wait_for(lambda m: m == "created /zkdemo/made-while-watch-was-away hello  "
                   "(missed while disconnected)", timeout=10)
    # The elector leads again with the znode it had: its session never ended.
    wait_until(leading, 10, what="the elector to lead again")
    assert [m for m in elector.messages() if m.startswith("created ")] == [f"created {path}"]
    assert writer.exists(path) is not None
    for process in (elector, watch):
        assert not any(m.startswith("session lost") or m == "reconnected (new session)"
                       for m in process.messages()), process.lines
    assert elector.stop() == 143 and watch.stop() == 143


def test_status_names_a_leader_that_hangs_and_scripts_stop_at_once(scratch_ensemble, scripts):
    """The leader hangs (SIGSTOP): for up to syncLimit ticks its followers
    still follow it, and status.py, asking all three, must say that the
    leader is the server that does not answer. Then every server hangs: a
    script told to stop exits at once, or after the wait it announces."""
    scratch_ensemble.up(tick_ms=1000)   # followers notice after 5 s; sessions of 10 s
    scratch_ensemble.wait_serving()
    leader = scratch_ensemble.leader()
    watch = scripts("watch.py", hosts=scratch_ensemble.hosts)
    reader = scripts("get.py", "--every", "0.5", hosts=scratch_ensemble.hosts)
    elector = scripts("create.py", "600", hosts=scratch_ensemble.hosts)
    elector.wait_for(lambda m: m == "became leader")
    # watch.py lists what is there as "present", and what comes later as
    # "created": the elector, started after it, may still win the first read.
    watch.wait_for(lambda m: m.startswith(("created /zkdemo/node-", "present /zkdemo/node-")))
    reader.wait_for(lambda m: m.endswith("  leader"))

    pids = scratch_ensemble.pids()
    os.kill(pids[leader], signal.SIGSTOP)
    try:
        code, lines = status(scratch_ensemble)
        assert code == 1, lines
        assert mode_line(lines, scratch_ensemble, leader).split()[1] == "down", lines
        assert lines[-1].startswith("no leader answers: followers still follow a leader this "
                                    "client cannot reach (cut off, hanging or down: "
                                    f"{scratch_ensemble.address(leader)}); writes may not go "
                                    "through"), lines
        for name in pids:
            if name != leader:
                os.kill(pids[name], signal.SIGSTOP)
        for process in (watch, reader, elector):
            process.wait_for(lambda m: m.startswith("connection suspended"), timeout=20)
        for process in (watch, reader):
            began = time.monotonic()
            assert process.stop() == 143
            assert time.monotonic() - began < 3, f"{process.proc.args} took long to stop"
            assert process.stderr == ""
        began = time.monotonic()
        elector.proc.send_signal(signal.SIGTERM)
        said = elector.wait_for(lambda m: m.startswith("exiting while the connection is down"))
        waits = float(re.search(r"waiting up to ([\d.]+) s", said).group(1))
        assert elector.wait(timeout=30) == 143
        assert time.monotonic() - began < waits + 3, elector.lines
    finally:
        for pid in pids.values():
            os.kill(pid, signal.SIGCONT)


def test_watch_py_whose_first_listing_a_lost_connection_cuts_short_lists_again(
        scratch_ensemble, scripts, zk_factory):
    """watch.py's server dies while it is still reading its first listing
    (seen in `make bench`: it exited 1, `lost the connection`): once its
    server is back it finishes the listing, each znode `present` once, none
    as `missed`."""
    scratch_ensemble.up(tick_ms=200)
    scratch_ensemble.wait_serving()
    zk = zk_factory(scratch_ensemble.hosts)
    zk.ensure_path("/zkdemo")
    count = 3000   # read in about 0.4 s here: long enough to be cut short
    for first in range(0, count, 500):
        for made in [zk.create_async(f"/zkdemo/c{n:05d}", b"x" * 1000)
                     for n in range(first, min(count, first + 500))]:
            made.get()
    watch = scripts("watch.py", "--hosts", scratch_ensemble.address("zoo1"))
    watch.wait_for(lambda m: m.startswith("watching "))
    os.kill(scratch_ensemble.pids()["zoo1"], signal.SIGKILL)
    watch.wait_for(lambda m: m.startswith("connection suspended"))
    before = watch.count(lambda m: m.startswith("present "))
    assert before < count, "the listing ended before the server died: nothing was tested"
    scratch_ensemble.run("start", "1")   # zoo2 and zoo3 kept the quorum, and its session
    watch.wait_for(lambda m: m == "reconnected (same session)", timeout=15)
    wait_until(lambda: watch.count(lambda m: m.startswith("present ")) >= count, 15,
               what="the listing to be finished")
    present = [m.split()[1] for m in watch.messages() if m.startswith("present ")]
    assert sorted(present) == [f"/zkdemo/c{n:05d}" for n in range(count)]
    assert not any("missed while disconnected" in m for m in watch.messages()), watch.lines[-5:]
    assert watch.stop() == 143
