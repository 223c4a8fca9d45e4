"""Bad input, everywhere: every script, every kind of wrong argument.

Each case must end with one line on stderr that names the script, exit 2 for
a usage error and 1 for a failure at run time, within the connect timeout, with
no traceback, nothing left in ZooKeeper and no process left running.
(The shared options --hosts and --timeout are tried on every script in
test_scripts.py.)
"""

import glob
import os
import socket
import time

import pytest

from conftest import run_script

CONNECTING = ["watch.py", "create.py", "get.py", "create-start.py", "acl-lockdown.py",
              "create-with-acls.py", "create-with-digest.py"]
PASSWORD = {"ZKDEMO_PASSWORD": "not-on-the-command-line"}

USAGE = [
    ("create.py", ["0"], "must be more than 0"),
    ("create.py", ["-5"], "must be more than 0"),
    ("create.py", ["soon"], "is not a number"),
    ("create.py", ["nan"], "must be more than 0"),
    ("create.py", ["inf"], "must be more than 0"),
    ("create.py", [""], "is not a number"),
    ("create.py", ["1", "2"], "unrecognized arguments: 2"),
    ("create.py", ["--session-timeout", "0"], "must be more than 0"),
    ("create.py", ["--session-timeout", "long"], "is not a number"),
    ("create-start.py", [], "NUMBER is required"),
    ("create-start.py", ["0"], "from 1 to 200"),
    ("create-start.py", ["201"], "from 1 to 200"),
    ("create-start.py", ["three"], "from 1 to 200"),
    ("create-start.py", ["-1"], "from 1 to 200"),
    ("create-start.py", ["2.5"], "from 1 to 200"),
    ("create-start.py", [""], "from 1 to 200"),
    ("create-stop.py", ["--grace", "-1"], "must be more than 0"),
    ("create-stop.py", ["--grace", "soon"], "is not a number"),
    ("create-stop.py", ["all"], "unrecognized arguments: all"),
    ("status.py", ["--timeout", "0"], "must be more than 0"),
    ("status.py", ["--watch", "now"], "unrecognized arguments: now"),
    ("get.py", ["--sync=yes"], "ignored explicit argument"),
    ("watch.py", ["/zkdemo"], "unrecognized arguments: /zkdemo"),
    ("acl-lockdown.py", ["--undo", "--recursive", "/"], "unrecognized arguments: /"),
    ("create-with-acls.py", ["--acl", "ip:1.2.3.4"], "unknown option --acl"),
    ("create-with-digest.py", ["--user", ""], "a user name must be non-empty"),
    ("create-with-digest.py", ["--user", "bob:x"], "without ':'"),
    ("create-with-digest.py", ["--password", "x"], "unknown option --password"),
    ("lock.py", [], "the following arguments are required: --store"),
    ("lock.py", ["0", "--store", "127.0.0.1:7000"], "must be more than 0"),
    ("lock.py", ["--store", "7000"], "expected IP:PORT"),
    ("lock.py", ["--store", "127.0.0.1:7000", "--name", "a/b"], "one znode name, without /"),
    ("lock.py", ["--store", "127.0.0.1:7000", "--fencing"], "unknown option --fencing"),
    ("store.py", [], "the following arguments are required: --listen"),
    ("store.py", ["--listen", "7000"], "expected IP:PORT"),
    ("store.py", ["--listen", "127.0.0.1:99999"], "expected IP:PORT"),
    ("store.py", ["--listen", "127.0.0.1:7000", "extra"], "unrecognized arguments: extra"),
] + [(name, ["1"] * (name in ("create.py", "create-start.py")) + ["--source", source], message)
     for name in CONNECTING + ["status.py"]
     for source, message in (("not-an-ip", "not an address of this machine"),
                             ("127.0.0.256", "not an address of this machine"))]


@pytest.mark.parametrize("name, args, message", USAGE)
def test_usage_errors(name, args, message, ensemble, zk, tmp_path, reliability):
    result = run_script(name, *args, hosts=ensemble.hosts,
                        env=dict(PASSWORD, ZKDEMO_RUN_DIR=str(tmp_path)))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"{name}: ") and message in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert_nothing_left(zk, tmp_path)
    reliability["bad_inputs_tried"] += 1


def test_no_password_without_a_terminal_is_a_usage_error(ensemble, zk, tmp_path):
    result = run_script("create-with-digest.py", hosts=ensemble.hosts)  # stdin: /dev/null
    assert result.returncode == 2
    assert result.stderr.startswith("create-with-digest.py: no password")
    assert_nothing_left(zk, tmp_path)


@pytest.fixture(params=["closed port", "silent server"])
def dead_end(request):
    """An address where ZooKeeper does not answer: nothing listening, or a
    listener that accepts connections and never says a word (as a paused
    server does: the kernel completes the handshake for it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        if request.param == "silent server":
            s.listen(16)
            yield Address(f"127.0.0.1:{s.getsockname()[1]}", silent=True)
            return
        port = s.getsockname()[1]
    yield Address(f"127.0.0.1:{port}", silent=False)


class Address(str):
    """host:port, and whether something listens there (and says nothing)."""

    def __new__(cls, text, silent):
        made = super().__new__(cls, text)
        made.silent = silent
        return made


@pytest.mark.parametrize("name", CONNECTING)
def test_unreachable_servers_fail_within_the_timeout(name, dead_end, ensemble, zk, tmp_path,
                                                     reliability):
    args = ["5"] if name in ("create.py", "create-start.py") else []
    started = time.monotonic()
    result = run_script(name, *args, "--hosts", dead_end, "--timeout", "1",
                        env=dict(PASSWORD, ZKDEMO_RUN_DIR=str(tmp_path)))
    took = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    if dead_end.silent:
        assert result.stderr == f"{name}: cannot reach ZooKeeper at {dead_end} within 1 s\n"
    else:   # refused: said before the timeout (test_scripts.py shows how soon)
        assert result.stderr == (f"{name}: nothing listens at {dead_end} (every connection "
                                 "refused); is the loopback ensemble running? (`make demo` "
                                 "starts it)\n")
    assert took < 1 + 4, f"took {took:.1f} s"  # the timeout, plus Python's start-up
    assert_nothing_left(zk, tmp_path)
    reliability["bad_inputs_tried"] += 1


def test_status_of_unreachable_servers_says_no_quorum(dead_end):
    result = run_script("status.py", "--hosts", dead_end, "--timeout", "1")
    assert result.returncode == 1
    assert result.stderr == ""
    assert result.stdout.splitlines()[-1].endswith(
        "no quorum: no server serves, so clients can neither read nor write "
        "(0 of 1 serving, 0 answering)")


def assert_nothing_left(zk, run_dir):
    """No znode under /zkdemo, and no worker started or recorded."""
    assert not zk.exists("/zkdemo") or zk.get_children("/zkdemo") == []
    assert glob.glob(os.path.join(str(run_dir), "workers", "*.json")) == []
    assert glob.glob(os.path.join(str(run_dir), "worker-*.log")) == []
