"""The seven tutorial scripts, run as a user runs them, against a real ensemble."""

import datetime
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys

import pytest
from kazoo.exceptions import ConnectionLoss, NodeExistsError, SessionExpiredError
from kazoo.security import OPEN_ACL_UNSAFE

from conftest import (CLUSTER, REPO, TIMESTAMP, held, processes_with, run_script, script_command,
                      stopped_at, wait_until)
from history import stamp

SCRIPTS = ["watch.py", "create.py", "get.py", "create-start.py", "create-stop.py",
           "acl-lockdown.py", "create-with-acls.py", "lock.py", "store.py"]


def line_time(process, message):
    return stamp(next(line for line in process.lines if line.endswith(message)))


def elector_nodes(zk):
    if not zk.exists("/zkdemo"):
        return []
    return sorted(c for c in zk.get_children("/zkdemo") if c.startswith("node-"))


# --- every script -------------------------------------------------------------

@pytest.mark.parametrize("name", SCRIPTS)
def test_help_explains_the_script(name):
    result = run_script(name, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: ")
    assert len(result.stdout.splitlines()) > 8


@pytest.mark.parametrize("name", SCRIPTS + ["status.py"])
def test_each_script_runs_by_its_path_as_the_readme_runs_it(name):
    """`scripts/NAME.py` on its own, as the lab and VM commands run them:
    executable, with a python3 shebang."""
    path = os.path.join(REPO, "scripts", name)
    assert os.access(path, os.X_OK), f"{name} is not executable (chmod +x, and commit the mode)"
    with open(path) as f:
        assert f.readline() == "#!/usr/bin/env python3\n"


@pytest.mark.parametrize("name", ["watch.py", "get.py", "acl-lockdown.py", "create-with-acls.py"])
def test_nothing_listening_is_one_line_well_before_the_timeout(name):
    """Every server refuses the connection (none runs): a script says so
    after about a second, not after --timeout, and says how to start them."""
    hosts = "127.0.0.1:1,127.0.0.2:1"
    started = datetime.datetime.now()
    result = run_script(name, "--hosts", hosts, "--timeout", "20")
    assert result.returncode == 1
    assert result.stderr == (f"{name}: nothing listens at {hosts} (every connection refused); "
                             "is the loopback ensemble running? (`make demo` starts it)\n")
    assert (datetime.datetime.now() - started).total_seconds() < 8   # 20 before


@pytest.mark.parametrize("args, message", [
    (["--hosts", ""], "empty host"),
    (["--hosts", "127.0.0.1,,127.0.0.2"], "empty host"),
    (["--hosts", "127.0.0.1:abc"], "bad port 'abc'"),
    (["--hosts", "127.0.0.1:0"], "bad port '0'"),
    (["--hosts", "127.0.0.1:65536"], "bad port '65536'"),
    (["--timeout", "-1"], "must be more than 0"),
    (["--timeout", "soon"], "is not a number"),
    (["--no-such-flag"], "unknown option --no-such-flag"),
    # A mistyped option is named, not the value after it taken for an argument.
    (["--sorce", "127.0.0.2"], "unknown option --sorce (did you mean --source?)"),
    (["--timout=3"], "unknown option --timout (did you mean --timeout?)"),
])
@pytest.mark.parametrize("name", ["watch.py", "create.py", "get.py", "acl-lockdown.py",
                                  "create-with-acls.py", "create-with-digest.py", "status.py",
                                  "lock.py"])
def test_usage_errors_are_one_line_and_exit_2(name, args, message):
    result = run_script(name, *args)
    assert result.returncode == 2
    assert result.stderr.startswith(f"{name}: ") and message in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_create_names_a_mistyped_option_rather_than_taking_its_value():
    result = run_script("create.py", "--sesion-timeout", "5", "1")
    assert result.returncode == 2
    assert result.stderr == ("create.py: unknown option --sesion-timeout (did you mean "
                             "--session-timeout?) (see --help)\n")


def test_stamps_are_utc_in_any_zone_so_scripts_and_events_log_line_up(ensemble, tmp_path):
    """A script in Tokyo, the ensemble's tool in New York: their stamps come
    in the order things happened, as the checkers and the timeline read them
    side by side (in local time they were 14 hours apart)."""
    def stamps_of_get():
        result = run_script("get.py", hosts=ensemble.hosts, env={"TZ": "Asia/Tokyo"})
        assert result.returncode == 0, result.stderr
        return [stamp(line) for line in result.stdout.splitlines() if re.match(TIMESTAMP, line)]

    before = stamps_of_get()
    subprocess.run([sys.executable, CLUSTER, "resume", "3", "--state-dir", str(tmp_path)],
                   env=dict(os.environ, TZ="America/New_York"), capture_output=True, timeout=60)
    events = [stamp(line) for line in (tmp_path / "events.log").read_text().splitlines()]
    after = stamps_of_get()
    assert before and len(events) == 2 and after, (before, events, after)   # begin, failed
    assert max(before) <= min(events) <= max(events) <= min(after), (before, events, after)
    assert "time in UTC" in run_script("get.py", "--help").stdout


def test_nothing_at_the_default_address_says_how_to_point_the_scripts(tmp_path):
    # No --hosts, no $ZKDEMO_HOSTS: the default is 127.0.0.1:2181, and the
    # tests' ensembles are elsewhere, as a learner's loopback ensemble is.
    result = run_script("get.py", "--timeout", "1")
    if result.returncode == 0:
        pytest.skip("a ZooKeeper server listens on 127.0.0.1:2181 on this machine")
    assert result.returncode == 1
    assert result.stderr.startswith("get.py: nothing listens at 127.0.0.1:2181 (every "
                                    "connection refused); with neither --hosts nor ")
    assert "$ZKDEMO_HOSTS" in result.stderr and "make demo" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_without_kazoo_the_error_names_the_fix():
    # -S leaves out site-packages, as a Python without the .venv would.
    result = subprocess.run([sys.executable, "-S", *script_command("get.py")[1:]],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "kazoo is not installed" in result.stderr and "make setup" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_output_lines_start_with_a_timestamp(ensemble, zk):
    result = run_script("get.py", hosts=ensemble.hosts)
    assert result.returncode == 0
    assert re.match(TIMESTAMP + r"/zkdemo does not exist yet", result.stdout)


# --- get.py -------------------------------------------------------------------

def test_get_lists_in_sequence_order_and_marks_the_leader(ensemble, zk):
    zk.ensure_path("/zkdemo")
    assert "/zkdemo has no znodes" in run_script("get.py", hosts=ensemble.hosts).stdout
    for data in (b"first", b"second", b"third"):
        zk.create("/zkdemo/node-", data, sequence=True, ephemeral=True)
    result = run_script("get.py", "--sync", hosts=ensemble.hosts)
    assert result.returncode == 0
    lines = [line.split(" ", 2)[2] for line in result.stdout.splitlines()]
    assert lines == ["/zkdemo has 3 znodes",
                     "/zkdemo/node-0000000000 first  leader",
                     "/zkdemo/node-0000000001 second",
                     "/zkdemo/node-0000000002 third"]


# --- create.py ------------------------------------------------------------------

@pytest.mark.parametrize("number", ["0", "-5", "soon", "nan", "inf"])
def test_create_refuses_a_bad_number(number):
    result = run_script("create.py", number)
    assert result.returncode == 2
    assert "NUMBER" in result.stderr.splitlines()[-1] or "seconds" in result.stderr.splitlines()[-1]


def test_create_makes_an_ephemeral_sequential_znode_with_its_details(ensemble, zk, scripts):
    elector = scripts("create.py", "60", hosts=ensemble.hosts)
    created = elector.wait_for(lambda m: m.startswith("created "), what="created")
    path = created.split()[1]
    assert re.fullmatch(r"/zkdemo/node-\d{10}", path)
    data, stat = zk.get(path)
    details = json.loads(data)
    assert details["pid"] == elector.proc.pid and details["ip"] == "127.0.0.1"
    assert details["host"] == socket.gethostname()
    assert stat.ephemeralOwner != 0
    elector.wait_for(lambda m: m == "became leader")

    assert elector.stop(signal.SIGTERM) == 143
    assert elector.stderr == ""
    assert elector.messages()[-1] == "no longer leader (exiting)"
    assert zk.exists(path) is None  # deleted at once, not a session timeout later


def test_create_stays_the_time_it_is_given(ensemble, zk, scripts):
    elector = scripts("create.py", "0.5", hosts=ensemble.hosts)
    assert elector.proc.wait(30) == 0
    elector.stop()
    assert elector.messages()[-2:] == ["time is up", "no longer leader (exiting)"]
    assert elector_nodes(zk) == []


def test_one_leader_and_each_follower_watches_only_its_predecessor(ensemble, zk, scripts):
    electors = []
    for _ in range(5):
        electors.append(scripts("create.py", "120", hosts=ensemble.hosts))
        electors[-1].wait_for(lambda m: m.startswith("created "), what="created")
    paths = [e.wait_for(lambda m: m.startswith("created ")).split()[1] for e in electors]
    electors[0].wait_for(lambda m: m == "became leader")
    for before, (elector, path) in zip(paths, list(zip(electors, paths))[1:]):
        elector.wait_for(lambda m: m == f"following {before}", what=f"following {before}")
    assert sum(e.count(lambda m: m == "became leader") for e in electors) == 1

    # The leader leaves: exactly one process, its successor, is woken.
    assert electors[0].stop(signal.SIGINT) == 130
    electors[1].wait_for(lambda m: m == "became leader")
    woken = [e for e in electors[2:] if e.count(lambda m: m.startswith("woken"))]
    assert woken == []
    assert electors[1].count(lambda m: m == f"woken: {paths[0]} deleted") == 1
    handover = line_time(electors[1], "became leader") - line_time(electors[0], "no longer leader (exiting)")
    assert datetime.timedelta(0) <= handover < datetime.timedelta(seconds=2)

    # A follower in the middle leaves: only the one behind it re-checks, and follows anew.
    electors[2].stop()
    electors[3].wait_for(lambda m: m == f"following {paths[1]}")
    assert electors[4].count(lambda m: m.startswith("woken")) == 0
    assert sum(e.count(lambda m: m == "became leader") for e in electors) == 2  # 0, then 1


def test_leader_steps_down_when_its_connection_is_suspended(scratch_ensemble, scripts):
    scratch_ensemble.up()
    scratch_ensemble.wait_serving()
    # The leader can reach only zoo1; pausing zoo1 leaves it unsure of its session.
    leader = scripts("create.py", "120", "--session-timeout", "4",
                     hosts=scratch_ensemble.address("zoo1"))
    leader.wait_for(lambda m: m == "became leader")
    scratch_ensemble.run("pause", "1")
    try:
        leader.wait_for(lambda m: m.startswith("connection suspended"), timeout=20)
        # Its lease may run out a moment before kazoo suspends the connection.
        said = leader.wait_for(lambda m: m.startswith("no longer leader ("))
        assert said == "no longer leader (connection suspended)" or said.startswith(
            "no longer leader (ZooKeeper has not confirmed the session for "), said
    finally:
        scratch_ensemble.run("resume", "1")
    # Back with the same session: its znode is still there, and it leads again.
    leader.wait_for(lambda m: m.startswith("reconnected"), timeout=30)
    wait_until(lambda: leader.count(lambda m: m == "became leader") == 2, 30,
               what="leading again")


# --- watch.py -----------------------------------------------------------------

def test_watch_reports_creates_updates_and_deletes(ensemble, zk, scripts):
    zk.create("/zkdemo/already-here", b"hello", makepath=True)
    watcher = scripts("watch.py", hosts=ensemble.hosts)
    watcher.wait_for(lambda m: m == "present /zkdemo/already-here hello")
    zk.create("/zkdemo/new", b"one")
    watcher.wait_for(lambda m: m == "created /zkdemo/new one")
    zk.set("/zkdemo/new", b"two")
    watcher.wait_for(lambda m: m == "updated /zkdemo/new two")
    zk.delete("/zkdemo/new")
    watcher.wait_for(lambda m: m == "deleted /zkdemo/new")
    # Several quick updates: each is reported, or counted as folded.
    for i in range(20):
        zk.set("/zkdemo/already-here", f"v{i}".encode())
    last = watcher.wait_for(lambda m: m.startswith("updated /zkdemo/already-here v19"))
    updates = [m for m in watcher.messages() if m.startswith("updated /zkdemo/already-here")]
    reported = sum(int(re.search(r"\((\d+) updates folded", m).group(1)) if "folded" in m else 1
                   for m in updates)
    assert reported == 20, updates
    assert last
    assert watcher.stop(signal.SIGINT) == 130
    assert watcher.stderr == ""


def test_watch_reconnects_to_another_server_and_reports_what_it_missed(scratch_ensemble,
                                                                     zk_factory, scripts):
    scratch_ensemble.up()
    scratch_ensemble.wait_serving()
    zk = zk_factory(scratch_ensemble.hosts)
    zk.ensure_path("/zkdemo")
    # --source 127.0.0.3 lets us find, in `stat`, which server watch.py is on.
    zk.create("/zkdemo/before", b"one")
    watcher = scripts("watch.py", "--source", "127.0.0.3", hosts=scratch_ensemble.hosts)
    watcher.wait_for(lambda m: m.startswith("present /zkdemo/before one"))

    server = wait_until(lambda: scratch_ensemble.server_of("127.0.0.3"), 10,
                        what="watch.py's server")
    others = ",".join(scratch_ensemble.address(name) for name in ("zoo1", "zoo2", "zoo3")
                      if name != server)
    writer = zk_factory(others)
    scratch_ensemble.run("kill", server[-1])

    def create_while_moving():
        # If the killed server led, the other two elect a new leader first.
        try:
            writer.create("/zkdemo/while-moving", b"made while watch.py reconnected")
        except NodeExistsError:
            pass  # an earlier try got through before its answer was lost
        except (ConnectionLoss, SessionExpiredError):
            return False
        return True
    wait_until(create_while_moving, 30, what="the write while watch.py moves")
    watcher.wait_for(lambda m: m.startswith("reconnected"), timeout=30)
    watcher.wait_for(lambda m: m.startswith("created /zkdemo/while-moving"), timeout=30)
    # kazoo forgets every watch when a connection drops: watch.py must have set them
    # anew, on the child list and on each child's data.
    writer.set("/zkdemo/before", b"two")
    watcher.wait_for(lambda m: m.startswith("updated /zkdemo/before two"), timeout=30)
    writer.create("/zkdemo/after", b"three")
    watcher.wait_for(lambda m: m.startswith("created /zkdemo/after three"), timeout=30)
    assert watcher.stop(signal.SIGINT) == 130
    assert watcher.stderr == ""


def watch_on_a_follower(ensemble, zk_factory, scripts, znodes):
    """watch.py on one follower, free to move only to the other (no election
    when its server dies), once it has listed `znodes` (path -> data); and
    a client on that other follower, whose writes are done there when it
    has its answer."""
    ensemble.up()
    modes = ensemble.wait_serving()
    followers = [name for name in ("zoo1", "zoo2", "zoo3") if modes[name] == "follower"]
    zk = zk_factory(ensemble.hosts)
    zk.ensure_path("/zkdemo")
    for first in range(0, len(znodes), 500):
        for made in [zk.create_async(path, data)
                     for path, data in list(znodes.items())[first:first + 500]]:
            made.get()
    # --source 127.0.0.3 lets us find, in `stat`, which server watch.py is on.
    watcher = scripts("watch.py", "--source", "127.0.0.3", "--hosts",
                      ",".join(ensemble.address(name) for name in followers))
    wait_until(lambda: watcher.count(lambda m: m.startswith("present ")) == len(znodes), 60,
               what="watch.py's listing")
    server = wait_until(lambda: ensemble.server_of("127.0.0.3"), 10, what="watch.py's server")
    other = next(name for name in followers if name != server)
    return watcher, server, zk_factory(ensemble.address(other))


def test_watch_reports_a_znode_made_again_while_it_was_away(scratch_ensemble, zk_factory,
                                                          scripts):
    watcher, server, writer = watch_on_a_follower(scratch_ensemble, zk_factory, scripts,
                                                  {"/zkdemo/w": b"old"})
    with held(watcher):   # its server dies, and /zkdemo/w is made anew before it notices
        scratch_ensemble.run("kill", server[-1])
        transaction = writer.transaction()
        transaction.delete("/zkdemo/w")
        transaction.create("/zkdemo/w", b"new")
        assert transaction.commit() == [True, "/zkdemo/w"]
    watcher.wait_for(lambda m: m.startswith("created /zkdemo/w new"), timeout=30)
    writer.set("/zkdemo/w", b"newer")
    watcher.wait_for(lambda m: m == "updated /zkdemo/w newer", timeout=10)
    lines = watcher.messages()
    assert lines[-3:] == ["deleted /zkdemo/w  (missed while disconnected)",
                          "created /zkdemo/w new  (missed while disconnected)",
                          "updated /zkdemo/w newer"], lines
    assert watcher.stop(signal.SIGINT) == 130 and watcher.stderr == ""


def requests_from(ensemble, name, source):
    """How many requests server `name` has had from the client at `source`
    (`stat`'s recved), 0 while it has no connection from there."""
    ip, port = ensemble.address(name).split(":")
    with socket.create_connection((ip, int(port)), timeout=2) as s:
        s.sendall(b"stat")
        said = s.makefile(errors="replace").read()
    found = re.search(rf"/{re.escape(source)}:\d+\[\d+\]\(queued=\d+,recved=(\d+)", said)
    return int(found.group(1)) if found else 0


def test_watch_says_updates_may_be_unseen_when_a_znode_goes_during_its_re_read(
        scratch_ensemble, zk_factory, scripts):
    """Seen in `make chaos`: while watch.py reconnected, /zkdemo/last was
    updated; its re-read listed it, and by the time it read the znode's data
    it was gone. No client can see that update, and watch.py must say so:
    the delete comes with `updates just before it may be unseen`.

    watch.py re-reads the znodes it knew one by one, 3000 before
    /zkdemo/last; the test stops it (SIGSTOP: a busy client) as soon as it
    has reconnected, deletes the znode through the server it is on, and lets
    it go on."""
    znodes = {f"/zkdemo/a{n:05d}": b"x" for n in range(3000)}
    watcher, server, writer = watch_on_a_follower(scratch_ensemble, zk_factory, scripts,
                                                  dict(znodes, **{"/zkdemo/last": b"v0"}))
    other = next(name for name in ("zoo1", "zoo2", "zoo3")
                 if name != server and scratch_ensemble.modes().get(name) == "follower")
    with held(watcher):   # its server dies and the znode is updated before it notices
        scratch_ensemble.run("kill", server[-1])
        writer.set("/zkdemo/last", b"v1")
    # Its re-read begun on the other server: its session, its listing and a
    # first read there (not only the `reconnected` line: a busy machine may
    # stop it before it lists, and the listing would then miss the znode).
    wait_until(lambda: requests_from(scratch_ensemble, other, "127.0.0.3") >= 3, 15,
               interval=0.002, what="watch.py to list /zkdemo again")
    with held(watcher):   # the znode goes before its re-read reaches it
        writer.delete("/zkdemo/last")
    said = watcher.wait_for(lambda m: m.startswith("deleted /zkdemo/last"), timeout=30)
    lines = watcher.messages()
    assert not any(m.startswith("updated /zkdemo/last") for m in lines), \
        f"watch.py read /zkdemo/last before the delete (stopped too late): {lines[-5:]}"
    assert said == "deleted /zkdemo/last (updates just before it may be unseen)", lines[-5:]
    # Its watches are set again: what follows is reported.
    writer.create("/zkdemo/after", b"one")
    watcher.wait_for(lambda m: m == "created /zkdemo/after one", timeout=10)
    assert watcher.stop(signal.SIGINT) == 130
    assert watcher.stderr == ""


# --- create-start.py and create-stop.py ---------------------------------------

@pytest.fixture
def run_dir(tmp_path):
    return {"ZKDEMO_RUN_DIR": str(tmp_path)}


def group_alive(pgid):
    """A process of the group still runs (an exited one waiting, as a zombie,
    for init to reap it does not count: it holds no session and no socket)."""
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def test_a_workers_folder_others_may_write_to_is_refused(tmp_path):
    """/tmp is shared: a folder another user made, or may write to, could
    hold their links and worker records. create-stop.py, which would signal
    what the records name, refuses it and touches nothing."""
    folder = tmp_path / "run"
    (folder / "workers").mkdir(parents=True)
    os.chmod(folder, 0o777)
    planted = folder / "workers" / "1.json"
    planted.write_text('{"pid": 1, "start_time": 1, "log": "/etc/passwd"}')
    result = run_script("create-stop.py", env={"ZKDEMO_RUN_DIR": str(folder)})
    assert result.returncode == 1
    assert result.stderr == (f"create-stop.py: {folder} may be written by other users (mode "
                             f"777): `chmod go-w {folder}`, or set ZKDEMO_RUN_DIR to a folder "
                             "of your own\n")
    assert planted.exists()


def test_a_workers_folder_of_another_user_is_refused(tmp_path):
    if os.getuid() != 0:
        pytest.skip("giving a folder to another user needs root")
    folder = tmp_path / "run"
    (folder / "workers").mkdir(parents=True, mode=0o700)
    planted = folder / "workers" / "1.json"
    planted.write_text('{"pid": 1, "start_time": 1, "log": "/etc/passwd"}')
    nobody = 65534
    os.chown(folder, nobody, nobody)
    result = run_script("create-stop.py", env={"ZKDEMO_RUN_DIR": str(folder)})
    assert result.returncode == 1
    assert result.stderr == (f"create-stop.py: {folder} belongs to another user (uid {nobody}): "
                             "remove it, or set ZKDEMO_RUN_DIR to a folder of your own\n")
    assert planted.exists()


def test_a_link_in_place_of_the_workers_folder_is_refused(tmp_path):
    real = tmp_path / "real"
    (real / "workers").mkdir(parents=True, mode=0o700)
    planted = real / "workers" / "1.json"
    planted.write_text('{"pid": 1, "start_time": 1, "log": "/etc/passwd"}')
    (tmp_path / "run").symlink_to(real)
    result = run_script("create-stop.py", env={"ZKDEMO_RUN_DIR": str(tmp_path / "run")})
    assert result.returncode == 1
    assert result.stderr == (f"create-stop.py: {tmp_path}/run is not a folder (a file, or a "
                             "link): remove it, or set ZKDEMO_RUN_DIR to a folder of your own\n")
    assert planted.exists()


def test_the_workers_folder_is_made_for_the_user_alone(tmp_path):
    """Even under a umask that lets everyone write (0)."""
    folder = tmp_path / "new" / "run"
    result = subprocess.run(script_command("create-stop.py"), capture_output=True, text=True,
                            timeout=60, env=dict(os.environ, ZKDEMO_RUN_DIR=str(folder)),
                            stdin=subprocess.DEVNULL, umask=0)
    assert (result.returncode, result.stdout, result.stderr) == (0, "stopped 0 workers\n", "")
    assert oct(folder.stat().st_mode & 0o777) == oct(0o700)
    assert oct((folder / "workers").stat().st_mode & 0o777) == oct(0o700)


def test_a_worker_record_that_is_a_link_is_not_followed(tmp_path):
    folder = tmp_path / "run"
    (folder / "workers").mkdir(parents=True, mode=0o700)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text('{"pid": 1, "start_time": 1, "log": "/etc/passwd"}')
    (folder / "workers" / "1.json").symlink_to(elsewhere)
    result = run_script("create-stop.py", env={"ZKDEMO_RUN_DIR": str(folder)})
    assert result.returncode == 1
    assert result.stderr == (f"create-stop.py: {folder}/workers/1.json is a link, and links "
                             "there are not followed: remove it\n")
    assert elsewhere.exists() and (folder / "workers" / "1.json").is_symlink()


def test_a_link_planted_where_a_worker_log_goes_is_not_followed(ensemble, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    (folder / "worker-1.log").symlink_to(target)
    result = run_script("create-start.py", "1", hosts=ensemble.hosts,
                        env={"ZKDEMO_RUN_DIR": str(folder)})
    assert result.returncode == 1
    assert result.stderr == (f"create-start.py: {folder}/worker-1.log is a link, and links "
                             "there are not followed: remove it\n")
    assert target.read_text() == "keep me\n"
    assert os.listdir(folder / "workers") == []


@pytest.mark.parametrize("number", ["0", "201", "three", "-1", "2.5"])
def test_create_start_refuses_a_bad_number_and_starts_nothing(number, run_dir):
    result = run_script("create-start.py", number, env=run_dir)
    assert result.returncode == 2
    assert "NUMBER must be a whole number from 1 to 200" in result.stderr
    assert not os.path.exists(os.path.join(run_dir["ZKDEMO_RUN_DIR"], "workers")) or \
        os.listdir(os.path.join(run_dir["ZKDEMO_RUN_DIR"], "workers")) == []


def test_workers_keep_electing_and_create_stop_leaves_nothing(ensemble, zk, run_dir):
    result = run_script("create-start.py", "3", hosts=ensemble.hosts, env=run_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("started 3 workers (pids ")
    pids = [int(p) for p in re.search(r"pids ([\d ]+)\)", result.stdout).group(1).split()]
    try:
        wait_until(lambda: len(elector_nodes(zk)) == 3, 30, what="3 znodes")
        logs = [os.path.join(run_dir["ZKDEMO_RUN_DIR"], f"worker-{i}.log") for i in (1, 2, 3)]
        wait_until(lambda: any("became leader" in open(p).read() for p in logs), 30,
                   what="a leader in the logs")
        # More workers while these run: each gets a log of its own.
        more = run_script("create-start.py", "2", hosts=ensemble.hosts, env=run_dir)
        assert more.returncode == 0, more.stderr
        pids += [int(p) for p in re.search(r"pids ([\d ]+)\)", more.stdout).group(1).split()]
        records = glob.glob(os.path.join(run_dir["ZKDEMO_RUN_DIR"], "workers", "*.json"))
        used = sorted(json.load(open(r))["log"] for r in records)
        assert used == sorted(logs + [os.path.join(run_dir["ZKDEMO_RUN_DIR"], f"worker-{i}.log")
                                      for i in (4, 5)])
    finally:
        stop = run_script("create-stop.py", env=run_dir)
    assert stop.returncode == 0
    assert stop.stdout == "stopped 5 workers\n"
    assert not any(group_alive(pid) for pid in pids)
    # The workers' create.py exited cleanly, so their ephemeral znodes went with them.
    assert elector_nodes(zk) == []
    assert run_script("create-stop.py", env=run_dir).stdout == "stopped 0 workers\n"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_create_start_stopped_while_it_starts_leaves_no_worker(ensemble, zk, run_dir, sig):
    """Ctrl-C (or SIGTERM) while create-start.py starts its workers: the one
    being started is recorded, then every worker this run started is stopped
    and its record removed. None is left running, recorded or not."""
    folder = run_dir["ZKDEMO_RUN_DIR"]
    workers = os.path.join(folder, "workers")
    process = subprocess.Popen(script_command("create-start.py", "40", "--hosts", ensemble.hosts),
                               env=dict(os.environ, **run_dir), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_until(lambda: os.path.isdir(workers) and os.listdir(workers), 30, interval=0.005,
                   what="a first worker's record")
        process.send_signal(sig)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    left = processes_with("ZKDEMO_RUN_DIR", folder)
    for pid in left:   # a failure here must not leave them for the next test
        os.kill(pid, signal.SIGKILL)
    assert process.returncode == 128 + sig, (out, err)
    assert (out, err) == ("", "")
    assert left == [], "workers left running"
    assert os.listdir(workers) == []
    wait_until(lambda: elector_nodes(zk) == [], 15, what="the workers' znodes to go")


def test_create_start_interrupted_while_it_loads_is_quiet(run_dir):
    """Ctrl-C in its first tenths of a second, while kazoo is still loading
    (as a quick Ctrl-C after Enter lands): exit 130 and not a word (it was a
    KeyboardInterrupt traceback)."""
    process = subprocess.Popen(script_command("create-start.py", "4"), env=dict(os.environ,
                               **run_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    # kazoo is loading once its ssl module is in the process's memory map.
    wait_until(lambda: "/_ssl." in open(f"/proc/{process.pid}/maps").read(), 10,
               interval=0.001, what="kazoo to be loading")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "Traceback" not in err and err == "", err
    assert processes_with("ZKDEMO_RUN_DIR", run_dir["ZKDEMO_RUN_DIR"]) == []


def test_create_start_clears_the_records_of_workers_gone(ensemble, run_dir):
    """Their pids can come round again, and a new record is made only where
    nothing is (O_EXCL): a stale one in its way must not stop a start."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    workers = os.path.join(run_dir["ZKDEMO_RUN_DIR"], "workers")
    os.makedirs(workers, mode=0o700)
    stale = os.path.join(workers, f"{gone.pid}.json")
    with open(stale, "w") as f:
        json.dump({"pid": gone.pid, "start_time": 1, "log": "worker-1.log"}, f)
    try:
        result = run_script("create-start.py", "1", hosts=ensemble.hosts, env=run_dir)
        assert result.returncode == 0, result.stderr
        assert not os.path.exists(stale)
        assert len(os.listdir(workers)) == 1
    finally:
        stop = run_script("create-stop.py", env=run_dir)
    assert stop.stdout == "stopped 1 worker\n"


def test_create_stop_never_signals_a_process_it_did_not_start(run_dir):
    # A process whose command line looks like a worker's, in a group of its own,
    # recorded with the start time of some other process that had its pid.
    lookalike = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "create-start.py", "--worker"],
        start_new_session=True)
    try:
        workers = os.path.join(run_dir["ZKDEMO_RUN_DIR"], "workers")
        os.makedirs(workers, exist_ok=True)
        with open(f"/proc/{lookalike.pid}/stat") as f:
            real_start = int(f.read().rsplit(")", 1)[1].split()[19])
        with open(os.path.join(workers, f"{lookalike.pid}.json"), "w") as f:
            json.dump({"pid": lookalike.pid, "start_time": real_start - 1}, f)
        result = run_script("create-stop.py", env=run_dir)
        assert result.returncode == 0
        assert result.stdout == "stopped 0 workers\n"
        assert lookalike.poll() is None
    finally:
        lookalike.kill()
        lookalike.wait()


# --- acl-lockdown.py and create-with-acls.py ----------------------------------

def test_lockdown_denies_another_address_and_undo_restores(ensemble, zk):
    result = run_script("acl-lockdown.py", hosts=ensemble.hosts)
    assert result.returncode == 0, result.stderr
    messages = [line.split(" ", 2)[2] for line in result.stdout.splitlines()]
    assert messages[0] == "ACL of / before: world:anyone:cdrwa"
    assert messages[1] == "ACL of / after:  world:anyone:r, ip:127.0.0.1:cdrwa"
    assert "not inherited" in messages[2]

    # From another address: reading works, writing under / does not.
    elector = run_script("create.py", "1", "--source", "127.0.0.2", hosts=ensemble.hosts)
    assert elector.returncode == 1
    assert elector.stderr.startswith("create.py: ZooKeeper refused to create /zkdemo (NoAuth)")
    assert len(elector.stderr.splitlines()) == 1
    again = run_script("acl-lockdown.py", "--undo", "--source", "127.0.0.2", hosts=ensemble.hosts)
    assert again.returncode == 1
    assert again.stderr == ("acl-lockdown.py: ZooKeeper refused to change the ACL of / for a "
                            "client at 127.0.0.2 (NoAuth): only 127.0.0.1 may\n")
    assert zk.exists("/zkdemo") is None  # nothing half-done

    undo = run_script("acl-lockdown.py", "--undo", hosts=ensemble.hosts)
    assert undo.returncode == 0
    assert undo.stdout.splitlines()[1].endswith("ACL of / after:  world:anyone:cdrwa")
    elector = run_script("create.py", "0.2", "--source", "127.0.0.2", hosts=ensemble.hosts)
    assert elector.returncode == 0, elector.stderr


def test_lockdown_recursive_reaches_existing_znodes(ensemble, zk):
    zk.create("/zkdemo/config", b"x", makepath=True)
    # Other tests' znodes may be there too (/zkdemo-locks...): count them all.
    def below(path):
        return [f"{path.rstrip('/')}/{child}" for child in zk.get_children(path)
                if f"{path.rstrip('/')}/{child}" != "/zookeeper"]
    tree, todo = [], below("/")
    while todo:
        tree.append(todo.pop())
        todo += below(tree[-1])
    assert "/zkdemo/config" in tree
    result = run_script("acl-lockdown.py", "--recursive", hosts=ensemble.hosts)
    assert result.returncode == 0, result.stderr
    assert f"set the same ACL on {len(tree)} more znodes" in result.stdout
    assert zk.get_acls("/zkdemo/config")[0] == zk.get_acls("/")[0]
    outsider = run_script("create-with-acls.py", "--source", "127.0.0.2", hosts=ensemble.hosts)
    assert outsider.returncode == 1
    assert "NoAuth" in outsider.stderr
    undo = run_script("acl-lockdown.py", "--undo", "--recursive", hosts=ensemble.hosts)
    assert undo.returncode == 0
    assert zk.get_acls("/zkdemo/config")[0] == OPEN_ACL_UNSAFE


def test_create_with_acls_shows_allowed_and_denied(ensemble, zk):
    local = run_script("create-with-acls.py", hosts=ensemble.hosts)
    assert local.returncode == 0, local.stderr
    assert "denied" not in local.stdout
    assert local.stdout.count("allowed") == 24

    outsider = run_script("create-with-acls.py", "--source", "127.0.0.2", hosts=ensemble.hosts)
    assert outsider.returncode == 0, outsider.stderr
    denied = [line.split(" ", 2)[2].split()[:-2] for line in outsider.stdout.splitlines()
              if line.endswith("denied (NoAuth)")]
    assert [" ".join(d) for d in denied] == [
        "write local-write", "create a child of local-write", "change the ACL of local-write",
        "read local-only", "list children of local-only", "write local-only",
        "create a child of local-only", "change the ACL of local-only"]
    assert zk.get_children("/zkdemo") == []  # it cleaned up after itself


@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP", "| head -n 3"])
def test_the_tour_stopped_at_any_moment_leaves_nothing_running(ensemble, tmp_path, how):
    """`make demo`'s tour stopped while its workers run (SIGTERM, SIGHUP), or
    read through `head`, which leaves after three lines: its workers, its
    create.py, watch.py and the recorder all stop."""
    env = dict(os.environ, ZKDEMO_IPS=",".join(ensemble.ips), ZKDEMO_STATE_DIR=str(tmp_path))
    tour = os.path.join(REPO, "provision", "tour.sh")
    if how.startswith("|"):
        run = subprocess.run(["bash", "-c", f"bash {tour} {how}"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert len(run.stdout.splitlines()) == 3, run.stdout
    else:
        sig = getattr(signal, how)
        code, output = stopped_at(["bash", tour], "started 3 workers",
                                  lambda process: process.send_signal(sig), timeout=60,
                                  cwd=REPO, env=env)
        assert code == 128 + sig, output
    wait_until(lambda: processes_with("ZKDEMO_STATE_DIR", str(tmp_path)) == [], 30,
               what="everything the tour started to stop")
