"""Test harness: real ZooKeeper ensembles on loopback ranges of the tests' own.

The tests never touch the tutorial's ensemble (127.0.10.101-103): they start
theirs through provision/local-cluster.py, as a user would, on 127.0.77.x
(shared by the tests that leave it as they found it) and 127.0.78.x (a fresh
one for tests that kill, stop or pause servers). A short tickTime keeps session
expiry quick. $ZKDEMO_TEST_NET=127.5 moves the ranges to 127.5.77.x and on,
for a second checkout tested beside the first; each pytest-xdist worker of a
run takes the next second octet (gw1: 127.1.77.x), so two checkouts' values
must be at least JOBS apart. Every ensemble is stopped
at the end of the run, also when a test fails or the run is interrupted; one
left behind by a killed run is stopped before the next run starts its own.
"""

import collections
import contextlib
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# provision/history.py (the checkers) and provision/timeline.py are imported by the tests.
sys.path.insert(0, os.path.join(REPO, "provision"))
CLUSTER = os.path.join(REPO, "provision", "local-cluster.py")
# `make test` runs the suite in several pytest processes at once (pytest-xdist:
# workers gw0, gw1, ...). Each is a run of its own, with loopback ranges, a
# folder for its ensembles' state and a lab name of its own (below).
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
WORKER_NUMBER = int(WORKER[2:]) if WORKER.startswith("gw") else 0
TICK_MS = 200


def utc_now():
    """Now, in UTC without a zone, as every stamp the project writes is."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)

# The first two octets of the tests' loopback ranges (NET.77.x, NET.78.x, NET.79.x):
# two checkouts tested at once on one machine each need their own, and so
# does each worker of one run (127.0, 127.1, ... from $ZKDEMO_TEST_NET on).
_FIRST = os.environ.get("ZKDEMO_TEST_NET", "127.0")
NET = f"127.{int(_FIRST.split('.')[1]) + WORKER_NUMBER}"
# Named after the range, so that whichever run next uses these addresses
# (with workers or without) finds what a killed run left on them.
STATE_ROOT = os.path.join(REPO, ".zkdemo", "tests", NET)

# A user's demo settings must not steer the tests to the demo ensemble.
for variable in ("ZKDEMO_HOSTS", "ZKDEMO_IPS", "ZKDEMO_STATE_DIR", "ZKDEMO_RUN_DIR",
                 "ZKDEMO_PASSWORD"):
    os.environ.pop(variable, None)


def wait_until(condition, timeout=30.0, interval=0.05, what="condition"):
    """Poll `condition` until it returns something true; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class LocalEnsemble:
    """One loopback ensemble, driven through local-cluster.py."""

    def __init__(self, name, ips):
        self.state_dir = os.path.join(STATE_ROOT, name)
        self.ips = ips
        self.hosts = ",".join(f"{ip}:2181" for ip in ips)

    def run(self, *args, check=True, timeout=120):
        result = subprocess.run(
            [sys.executable, CLUSTER, *args, "--state-dir", self.state_dir],
            capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"local-cluster.py {' '.join(args)} failed "
                                 f"({result.returncode}):\n{result.stdout}{result.stderr}")
        return result

    def up(self, tick_ms=TICK_MS):
        return self.run("up", "--ips", ",".join(self.ips), "--tick-time", str(tick_ms))

    def down(self):
        return self.run("down")

    def wipe(self):
        """Stop whatever runs in this state dir and forget its data."""
        if os.path.isdir(self.state_dir):
            self.down()
            shutil.rmtree(self.state_dir)

    def modes(self):
        """{'zoo1': 'follower', ...} as `local-cluster.py status` prints it."""
        modes = {}
        for line in self.run("status", check=False).stdout.splitlines():
            fields = line.split()
            if fields and fields[0].startswith("zoo"):
                modes[fields[0]] = " ".join(fields[4:])
        return modes

    def pids(self):
        pids = {}
        for name in ("zoo1", "zoo2", "zoo3"):
            try:
                with open(os.path.join(self.state_dir, name, "pid")) as f:
                    pids[name] = int(f.read())
            except OSError:
                pass
        return pids

    def leader(self):
        return next((n for n, m in self.modes().items() if m == "leader"), None)

    def wait_serving(self, servers=("zoo1", "zoo2", "zoo3"), timeout=60):
        def serving():
            modes = self.modes()
            if all(modes.get(s) in ("leader", "follower") for s in servers) \
                    and "leader" in modes.values():
                return modes
        return wait_until(serving, timeout, interval=0.2,
                          what=f"{', '.join(servers)} to serve with a leader")

    def address(self, name):
        return f"{self.ips[int(name[-1]) - 1]}:2181"

    def server_of(self, source):
        """Which server a client connecting from `source` uses (from `stat`)."""
        for name in ("zoo1", "zoo2", "zoo3"):
            ip, port = self.address(name).split(":")
            try:
                with socket.create_connection((ip, int(port)), timeout=2) as s:
                    s.sendall(b"stat")
                    if f"/{source}:" in s.makefile(errors="replace").read():
                        return name
            except OSError:
                pass
        return None


def require(tool, found):
    """A test that needs `tool` and cannot run without it: skipped on a
    learner's machine, a failure under CI=true, where nothing may be skipped."""
    if not found:
        message = f"{tool} is missing: `make test` installs it on Debian"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true a skip, from wherever it comes, is a failure: a green CI
    with skipped tests would hide exactly what users hit."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped under CI=true, which allows no skip: {reason}"


_INTERRUPTED = []


def _interrupt(signum, frame):
    # Once: a worker told twice (Ctrl-C reaches it from the terminal and from
    # the run that started it) must not break off the teardown the first began.
    if not _INTERRUPTED:
        _INTERRUPTED.append(signum)
        raise KeyboardInterrupt


def _workers():
    """The pids of this run's pytest-xdist workers: the children of this process
    that run Python (execnet starts each as `python -c ...`)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            if int(fields[1]) == os.getpid() and fields[0] != "Z":
                found.append(int(pid))
        except (OSError, ValueError, IndexError):
            pass
    return found


def _interrupt_workers(signum, frame):
    """The run that started the workers, stopped: each worker is told (if
    the signal did not reach it too), takes down what its tests made and
    reports it was interrupted, which ends the run. A second signal ends it
    at once (xdist then ends each worker within about 15 s)."""
    if _INTERRUPTED:
        raise KeyboardInterrupt
    _INTERRUPTED.append(signum)
    for pid in _workers():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


# The files that take longest, first: with workers, each starts on a worker of
# its own while the rest of the suite fills the others. (`make test` sends
# whole files to workers, for their module fixtures: a lab, the VMs.)
LONGEST_FIRST = ["test_vms.py", "test_chaos.py", "test_lab.py", "test_quorum_edges.py",
                 "test_readme.py", "test_provision.py", "test_scripts.py", "test_faults.py"]


def pytest_collection_modifyitems(session, config, items):
    if getattr(config.option, "numprocesses", None) or WORKER:
        def rank(item):
            name = item.path.name
            return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
        items.sort(key=rank)   # stable: the order within a file stays


_CONFIG = []


def pytest_configure(config):
    # A CI timeout sends SIGTERM, a closed terminal SIGHUP: turn each into
    # Ctrl-C, so fixtures still tear down. With workers, the run that started
    # them passes any of the three on and waits for them.
    if getattr(config.option, "numprocesses", None) and not WORKER:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _interrupt_workers)
        # Should pytest-xdist itself end the workers, it allows them 5 minutes
        # (not 10 s) before it kills them.
        from xdist.workermanage import NodeManager
        NodeManager.EXIT_TIMEOUT = 300
    else:
        for sig in (signal.SIGTERM, signal.SIGHUP) + ((signal.SIGINT,) if WORKER else ()):
            signal.signal(sig, _interrupt)
    _CONFIG.append(config)


def tell(line):
    """A line shown in the run's output whatever pytest captures: what a
    fixture found left by an earlier run, how long the VMs took."""
    plugins = _CONFIG[0].pluginmanager if _CONFIG else None
    reporter = plugins.get_plugin("terminalreporter") if plugins else None
    if reporter is None:
        print(line, file=sys.stderr)
        return
    capture = plugins.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write_line(line)


def processes_with(variable, value):
    """The pids of every process with variable=value in its environment: what
    a run started under that setting and is still running, wherever it is."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if f"{variable}={value}".encode() in f.read().split(b"\0"):
                    found.append(int(pid))
        except OSError:
            pass
    return found


def stopped_at(command, starts, stop, timeout=300, **kwargs):
    """Run `command` in a session of its own, its output read line by line;
    at the first line that starts with `starts`, call stop(process) (a
    signal, as a user or a time limit sends it) and read the rest. Returns
    (exit code, the whole output); the process is killed if it outlives
    `timeout` seconds after that."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, stdin=subprocess.DEVNULL, start_new_session=True,
                               **kwargs)
    said = []
    try:
        for line in process.stdout:
            said.append(line)
            if line.startswith(starts):
                stop(process)
                break
        said.append(process.communicate(timeout=timeout)[0])
    finally:
        if process.poll() is None:
            # The suite itself was stopped, or the command outlived its time:
            # SIGTERM first, so that it takes down what it made (a lab, say).
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    output = "".join(said)
    assert any(line.startswith(starts) for line in said), f"never printed {starts!r}:\n{output}"
    return process.returncode, output


def removed_leftovers(what, down):
    """Tell what a `down` run before a fixture's `up` removed, if anything."""
    said = (down.stdout + down.stderr).strip()
    if down.returncode != 0 or "nothing to take down" not in said:
        tell(f"{what}: an earlier run left something behind; {said}")


@pytest.fixture(scope="session")
def ensemble():
    """A running three-server ensemble, shared: leave it as you found it."""
    cluster = LocalEnsemble("shared", [f"{NET}.77.{i}" for i in (1, 2, 3)])
    cluster.wipe()
    cluster.up()
    try:
        cluster.wait_serving()
        yield cluster
    finally:
        cluster.down()


@pytest.fixture
def scratch_ensemble():
    """A fresh ensemble of one test's own, for killing, stopping and pausing."""
    cluster = LocalEnsemble("scratch", [f"{NET}.78.{i}" for i in (1, 2, 3)])
    cluster.wipe()
    try:
        yield cluster
    finally:
        cluster.down()


def kazoo_client(hosts, **kwargs):
    from kazoo.client import KazooClient
    client = KazooClient(hosts=hosts, **kwargs)
    client.start(timeout=15)
    return client


@pytest.fixture
def zk_factory():
    """Connect kazoo clients; all are closed at the end of the test."""
    clients = []

    def connect(hosts, **kwargs):
        client = kazoo_client(hosts, **kwargs)
        clients.append(client)
        return client
    yield connect
    for client in clients:
        client.stop()
        client.close()


@pytest.fixture
def zk(ensemble, zk_factory):
    """A client from 127.0.0.1 on a tree with no /zkdemo and an open /."""
    from kazoo.security import OPEN_ACL_UNSAFE
    client = zk_factory(ensemble.hosts)
    client.set_acls("/", OPEN_ACL_UNSAFE)
    client.delete("/zkdemo", recursive=True)
    yield client
    client.set_acls("/", OPEN_ACL_UNSAFE)


SCRIPTS = os.path.join(REPO, "scripts")
TIMESTAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} "


def script_command(name, *args):
    return [sys.executable, os.path.join(SCRIPTS, name), *args]


def run_script(name, *args, hosts=None, timeout=60, env=None):
    """Run a tutorial script to its end, as a user would from a shell."""
    environment = dict(os.environ, **(env or {}))
    if hosts:
        environment["ZKDEMO_HOSTS"] = hosts
    return subprocess.run(script_command(name, *args), capture_output=True, text=True,
                          timeout=timeout, env=environment, stdin=subprocess.DEVNULL)


class OutputProcess:
    """A command running in the background; its output is collected line by
    line so a test can wait for what a user would see."""

    def __init__(self, command, env=None):
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=dict(os.environ, **(env or {})),
                                     stdin=subprocess.DEVNULL)
        self.lines = []
        self.stderr = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def messages(self):
        """The output lines without their timestamps."""
        return [line.split(" ", 2)[2] if line[:4].isdigit() else line
                for line in list(self.lines)]

    def wait_for(self, predicate, timeout=30, what="a line"):
        """Wait for an output line (without timestamp) for which predicate is true."""
        def found():
            for message in self.messages():
                if predicate(message):
                    return message
            if self.proc.poll() is not None:
                self._reader.join(5)
                for message in self.messages():
                    if predicate(message):
                        return message
                raise AssertionError(f"exited ({self.proc.returncode}) before {what}:\n"
                                     + "\n".join(self.lines) + self.proc.stderr.read())
        return wait_until(found, timeout, what=what)

    def count(self, predicate):
        return sum(1 for m in self.messages() if predicate(m))

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Send sig and wait for the exit; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout=30):
        """Wait for the exit; returns the exit code."""
        code = self.proc.wait(timeout)
        self._reader.join(5)
        self.stderr = self.proc.stderr.read()
        return code

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def held(process):
    """The process stopped (SIGSTOP), as a client whose machine is busy
    elsewhere: ZooKeeper's notifications wait for it in its socket, in the
    order ZooKeeper sent them, and it reads them all at once when let go."""
    os.kill(process.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(process.proc.pid, signal.SIGCONT)


def stop_all(processes, sig=signal.SIGTERM, grace=15.0):
    """Stop every one of `processes` (Popen or OutputProcess), whatever
    happens: `sig` to all at once, then SIGKILL to any still running after
    `grace` seconds. Never raises for a slow process, so that a `finally`
    using it leaves nothing behind."""
    popens = [getattr(process, "proc", process) for process in processes]
    for popen in popens:
        if popen.poll() is None:
            popen.send_signal(sig)
    deadline = time.monotonic() + grace
    for popen in popens:
        try:
            popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
    for process in processes:
        if isinstance(process, OutputProcess):
            process._reader.join(5)


class ScriptProcess(OutputProcess):
    """A tutorial script running in the background, as a user starts it."""

    def __init__(self, name, *args, hosts=None, env=None):
        super().__init__(script_command(name, *args),
                         dict(env or {}, **({"ZKDEMO_HOSTS": hosts} if hosts else {})))


@pytest.fixture
def scripts():
    """Start tutorial scripts in the background; any still running at the end are killed."""
    started = []

    def start(name, *args, **kwargs):
        process = ScriptProcess(name, *args, **kwargs)
        started.append(process)
        return process
    yield start
    for process in started:
        process.kill()


@pytest.fixture(scope="session")
def reliability():
    """Figures the fault and bad-input tests add up, written at the end of the
    run to .zkdemo/tests/NET/reliability.json for the README's Reliability section."""
    figures = collections.Counter()
    yield figures
    if figures:
        os.makedirs(STATE_ROOT, exist_ok=True)
        with open(os.path.join(STATE_ROOT, "reliability.json"), "w") as f:
            json.dump(dict(figures), f, indent=2, sort_keys=True)
