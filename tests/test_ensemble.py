"""The loopback ensemble behaves like the tutorial's three VMs."""

import os
import socket
import subprocess
import sys

import pytest

from conftest import CLUSTER, NET, LocalEnsemble


def process_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_up_gives_one_leader_and_two_followers(ensemble):
    modes = ensemble.modes()
    assert sorted(modes.values()) == ["follower", "follower", "leader"]


def test_up_again_changes_nothing(ensemble):
    pids = ensemble.pids()
    result = ensemble.up()
    assert result.stdout.count("already running") == 3
    assert ensemble.pids() == pids
    assert f"--hosts {ensemble.hosts}" in result.stdout


def test_write_through_one_server_is_read_through_another_after_sync(ensemble, zk_factory):
    writer = zk_factory(ensemble.address("zoo1"))
    reader = zk_factory(ensemble.address("zoo3"))
    writer.create("/ensemble-test/sync", b"written via zoo1", makepath=True)
    try:
        # A server answers reads from its own copy, which may lag the leader;
        # sync() makes zoo3 catch up first.
        reader.sync("/ensemble-test/sync")
        assert reader.get("/ensemble-test/sync")[0] == b"written via zoo1"
    finally:
        writer.delete("/ensemble-test", recursive=True)


def test_one_machine_may_hold_more_connections_than_zookeepers_default(ensemble, zk_factory):
    """create-start.py may run 200 workers on one machine; ZooKeeper's default
    of 60 connections per address per server would turn most away."""
    clients = [zk_factory(ensemble.address("zoo1"), timeout=10) for _ in range(70)]
    assert all(client.connected for client in clients)


def test_killing_the_leader_elects_another_and_loses_nothing(scratch_ensemble, zk_factory):
    scratch_ensemble.up()
    scratch_ensemble.wait_serving()
    client = zk_factory(scratch_ensemble.hosts)
    client.create("/kept", b"before the crash")
    old_leader = scratch_ensemble.leader()

    scratch_ensemble.run("kill", old_leader[-1])
    survivors = [n for n in ("zoo1", "zoo2", "zoo3") if n != old_leader]
    modes = scratch_ensemble.wait_serving(survivors)
    assert modes[old_leader] == "down"
    for name in survivors:
        reader = zk_factory(scratch_ensemble.address(name))
        reader.sync("/kept")
        assert reader.get("/kept")[0] == b"before the crash"

    # The old leader comes back, as a follower, with the data.
    result = scratch_ensemble.run("start", old_leader[-1])
    assert "follower" in result.stdout
    reader = zk_factory(scratch_ensemble.address(old_leader))
    reader.sync("/kept")
    assert reader.get("/kept")[0] == b"before the crash"


def test_a_stopped_server_rejoins_and_catches_up(scratch_ensemble, zk_factory):
    scratch_ensemble.up()
    scratch_ensemble.wait_serving()
    follower = next(n for n, m in scratch_ensemble.modes().items() if m == "follower")
    scratch_ensemble.run("stop", follower[-1])
    assert scratch_ensemble.modes()[follower] == "down"
    client = zk_factory(scratch_ensemble.hosts)
    client.create("/while-away", b"written while a server was stopped")

    scratch_ensemble.run("start", follower[-1])
    scratch_ensemble.wait_serving()
    reader = zk_factory(scratch_ensemble.address(follower))
    reader.sync("/while-away")
    assert reader.get("/while-away")[0] == b"written while a server was stopped"


def test_pause_and_resume(scratch_ensemble):
    scratch_ensemble.up()
    scratch_ensemble.wait_serving()
    scratch_ensemble.run("pause", "1")
    assert scratch_ensemble.modes()["zoo1"] == "paused"
    scratch_ensemble.run("resume", "1")
    scratch_ensemble.wait_serving()


def test_down_leaves_no_process_and_frees_the_ports(scratch_ensemble):
    scratch_ensemble.up()
    pids = scratch_ensemble.pids()
    assert len(pids) == 3 and all(process_alive(p) for p in pids.values())
    scratch_ensemble.run("pause", "2")  # a paused server must go too
    result = scratch_ensemble.down()
    assert result.stdout.count("stopped") == 3
    assert not any(process_alive(p) for p in pids.values())
    for ip in scratch_ensemble.ips:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((ip, 2181), timeout=2).close()
    assert "was not running" in scratch_ensemble.down().stdout


def test_a_taken_port_is_one_clear_line(scratch_ensemble):
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((scratch_ensemble.ips[1], 2181))
        squatter.listen()
        result = scratch_ensemble.run("up", "--ips", ",".join(scratch_ensemble.ips), check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"local-cluster.py: zoo2: {NET}.78.2:2181 is already "
                                     "in use by another process; stop it or choose --ips")
    assert "Traceback" not in result.stderr


def test_no_zookeeper_found_is_one_clear_line(tmp_path):
    cluster = LocalEnsemble("no-zookeeper", [f"{NET}.79.{i}" for i in (1, 2, 3)])
    env = dict(os.environ, ZOOKEEPER_HOME=str(tmp_path))
    result = subprocess.run([sys.executable, CLUSTER, "up", "--ips", ",".join(cluster.ips),
                             "--state-dir", str(tmp_path / "state")],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith(f"local-cluster.py: no ZooKeeper jars in ZOOKEEPER_HOME={tmp_path}")
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["up", "--ips", "10.0.10.101,10.0.10.102,10.0.10.103"], "is not a loopback address"),
    (["up", "--ips", "127.0.79.1,127.0.79.1,127.0.79.2"], "the addresses must differ"),
    (["up", "--ips", "127.0.79.1,banana,127.0.79.2"], "is not an IPv4 address"),
    (["up", "--tick-time", "0"], "must be 10 to 60000 ms"),
    (["kill"], "kill needs a server"),
    (["status", "2"], "status takes no server"),
    (["frobnicate"], "invalid choice"),
])
def test_usage_errors(tmp_path, args, message):
    result = subprocess.run([sys.executable, CLUSTER, *args, "--state-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert message in result.stderr.splitlines()[-1]
    assert not os.listdir(tmp_path)


def test_kill_of_an_unknown_server(tmp_path):
    result = subprocess.run([sys.executable, CLUSTER, "kill", "7", "--state-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2   # a usage error, as a bad argument is
    assert result.stderr == ("local-cluster.py: no server '7': choose one of 1 (zoo1), 2 (zoo2), "
                             "3 (zoo3), or leader\n")


def test_kill_leader_kills_whichever_server_leads_and_status_tells_no_quorum(scratch_ensemble):
    scratch_ensemble.up()
    scratch_ensemble.wait_serving()
    leader = scratch_ensemble.leader()
    assert scratch_ensemble.run("kill", "leader").stdout == f"{leader}  killed (SIGKILL)\n"
    assert leader not in scratch_ensemble.pids() or \
        scratch_ensemble.modes()[leader] == "down"
    scratch_ensemble.wait_serving([n for n in ("zoo1", "zoo2", "zoo3") if n != leader])
    assert scratch_ensemble.run("status").returncode == 0
    # The second kill leaves one server: no quorum, and status says so by its exit code.
    scratch_ensemble.run("kill", "leader")
    result = scratch_ensemble.run("status", check=False)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "no quorum: clients cannot read or write"


def test_servers_log_through_log4j(ensemble):
    log = os.path.join(ensemble.state_dir, "zoo1", "zookeeper.log")
    text = open(log).read()
    assert "QuorumPeerMain" in text or "QuorumPeer" in text
    assert "NOP" not in text  # slf4j's silent no-op logger would print a NOP warning
