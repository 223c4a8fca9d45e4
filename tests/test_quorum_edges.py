"""The moments just after a quorum is lost or comes back, when a server's own
word and a client's connection state are behind the truth.

- status.py must not call it a quorum while a leader whose followers are gone
  still answers `Mode: leader` (it does for up to syncLimit ticks);
- create.py stopped while its connection is still recovering must delete its
  znode as soon as ZooKeeper answers again, or else say that it stays until
  the session expires, and the next elector takes over accordingly.
"""

import os
import signal

import pytest

from conftest import ScriptProcess, run_script, wait_until
from election_checker import check
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
