"""create-with-digest.py and status.py, run as users run them."""

import base64
import fcntl
import hashlib
import os
import re
import select
import signal
import subprocess
import termios
import time

from conftest import TIMESTAMP, run_script, script_command, wait_until

PASSWORD = "correct horse battery staple"


def messages(output):
    return [re.sub("^" + TIMESTAMP, "", line) for line in output.splitlines()]


# --- create-with-digest.py ------------------------------------------------------

def test_digest_lets_in_only_the_right_password(ensemble, zk):
    result = run_script("create-with-digest.py", "--user", "bob", hosts=ensemble.hosts,
                        env={"ZKDEMO_PASSWORD": PASSWORD})
    assert result.returncode == 0, result.stderr
    lines = messages(result.stdout)
    path = re.match(r"created (/zkdemo/digest-bob-\d+)$", lines[0]).group(1)
    # The ACL holds bob:base64(sha1("bob:password")), computed here independently.
    digest = base64.b64encode(hashlib.sha1(f"bob:{PASSWORD}".encode()).digest()).decode()
    assert lines[1] == f"  ACL as ZooKeeper stores it: digest:bob:{digest}:cdrwa"
    answers = [line.split()[-1] if "allowed" in line else " ".join(line.split()[-2:])
               for line in lines if line.startswith("  read ") or line.startswith("  write ")]
    assert answers == ["denied (NoAuth)"] * 4 + ["allowed"] * 2
    assert [line for line in lines if line.startswith("a client with")] == [
        "a client with no credentials:", "a client with a wrong password:",
        "a client with the right password:"]
    assert lines[-1] == f"deleted {path}"
    assert zk.exists(path) is None
    assert PASSWORD not in result.stdout + result.stderr


def test_digest_keep_leaves_a_znode_whose_acl_holds_no_password(ensemble, zk):
    result = run_script("create-with-digest.py", "--keep", hosts=ensemble.hosts,
                        env={"ZKDEMO_PASSWORD": PASSWORD})
    assert result.returncode == 0, result.stderr
    path = re.search(r"kept (/zkdemo/digest-alice-\d+)", result.stdout).group(1)
    try:
        zk.add_auth("digest", f"alice:{PASSWORD}")  # ZooKeeper 3.8 shows an ACL to readers only
        acls, _ = zk.get_acls(path)
        assert [acl.id.scheme for acl in acls] == ["digest"]
        assert PASSWORD not in acls[0].id.id and acls[0].id.id.startswith("alice:")
        assert zk.get(path)[0] == b"changed"  # written by the client with the right password
    finally:
        zk.delete(path)
    assert PASSWORD not in result.stdout + result.stderr


class InATerminal:
    """A script run in a terminal of its own (a pty), as from a login, with
    no $ZKDEMO_PASSWORD: what it shows there, and what is typed to it."""

    def __init__(self, *args, hosts="127.0.0.1:2181"):
        self.controller, terminal = os.openpty()

        def own_terminal():   # a session whose controlling terminal is the pty
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        env = {k: v for k, v in os.environ.items() if k != "ZKDEMO_PASSWORD"}
        env["ZKDEMO_HOSTS"] = hosts
        self.process = subprocess.Popen(script_command(*args), stdin=terminal, stdout=terminal,
                                        stderr=terminal, env=env, preexec_fn=own_terminal)
        os.close(terminal)
        self.seen = b""

    def shows(self, text, seconds=30):
        deadline = time.monotonic() + seconds
        while text not in self.seen and time.monotonic() < deadline:
            ready, _, _ = select.select([self.controller], [], [], 0.2)
            if ready:
                try:
                    self.seen += os.read(self.controller, 4096)
                except OSError:   # EIO: the script has gone
                    break
        return text in self.seen

    def type(self, text):
        os.write(self.controller, text)

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.controller)
        return self.seen.decode(errors="replace")


def test_digest_asks_for_the_password_in_a_terminal_and_shows_it_nowhere(ensemble):
    """With no $ZKDEMO_PASSWORD, in a terminal, as the README runs it: the
    password is asked for, typed without echo, and never printed."""
    terminal = InATerminal("create-with-digest.py", hosts=ensemble.hosts)
    try:
        assert terminal.shows(b"password (not shown): "), terminal.seen
        terminal.type(PASSWORD.encode() + b"\n")
        assert terminal.shows(b"deleted /zkdemo/digest-alice-"), terminal.seen
        assert terminal.process.wait(timeout=30) == 0
    finally:
        output = terminal.close()
    assert PASSWORD not in output, output
    assert output.count("allowed") == 2, output


def test_digest_asked_and_given_no_password_says_so_in_one_line():
    """Enter alone, or Ctrl-D (end of input), at the prompt: a usage error,
    told in one line before anything connects (no traceback)."""
    for typed in (b"\n", b"\x04"):
        terminal = InATerminal("create-with-digest.py")
        try:
            assert terminal.shows(b"password (not shown): "), terminal.seen
            terminal.type(typed)
            assert terminal.shows(b"no password typed\r\n"), terminal.seen
            assert terminal.process.wait(timeout=30) == 2
        finally:
            output = terminal.close()
        assert output.replace("\r\n", "\n") == (
            "password (not shown): \ncreate-with-digest.py: no password typed\n"), (typed, output)


def test_digest_without_a_password_is_a_usage_error(ensemble):
    result = run_script("create-with-digest.py", hosts=ensemble.hosts)  # stdin is not a terminal
    assert result.returncode == 2
    assert result.stderr == ("create-with-digest.py: no password: set ZKDEMO_PASSWORD or run "
                             "in a terminal to be asked\n")


def test_digest_with_an_empty_password_is_a_usage_error():
    result = run_script("create-with-digest.py", env={"ZKDEMO_PASSWORD": ""})
    assert result.returncode == 2
    assert result.stderr == "create-with-digest.py: ZKDEMO_PASSWORD is empty\n"


# --- status.py ------------------------------------------------------------------

STATUS_LINE = re.compile(r"(?P<address>\S+) +(?P<mode>leader|follower) +zxid 0x[0-9a-f]+ +"
                         r"znodes \d+ +connections \d+ +latency [\d./]+ ms"
                         r"(?P<synced>  synced followers \d+)?$")


def test_status_shows_one_leader_two_followers_and_a_quorum(ensemble):
    result = run_script("status.py", hosts=ensemble.hosts)
    assert result.returncode == 0, result.stderr
    lines = messages(result.stdout)
    matches = [STATUS_LINE.match(line) for line in lines[:3]]
    assert all(matches), lines
    assert [m["address"] for m in matches] == ensemble.hosts.split(",")
    assert sorted(m["mode"] for m in matches) == ["follower", "follower", "leader"]
    leader = next(m for m in matches if m["mode"] == "leader")
    assert leader["synced"] == "  synced followers 2"
    assert not any(m["synced"] for m in matches if m["mode"] == "follower")
    assert lines[3] == (f"quorum: {leader['address']} leads, 3 of 3 servers in step with it "
                        "(a majority is 2)")


def test_status_says_no_quorum_when_two_servers_are_gone(scratch_ensemble, scripts):
    scratch_ensemble.up()
    scratch_ensemble.wait_serving()
    scratch_ensemble.run("pause", "1")
    scratch_ensemble.run("kill", "2")
    # zoo3 gives up its leader or follower role once it misses a quorum.
    result = wait_until(lambda: (r := run_script("status.py", "--timeout", "1",
                                                 hosts=scratch_ensemble.hosts)).returncode == 1
                        and "not serving" in r.stdout and r, 30, what="zoo3 to stop serving")
    lines = messages(result.stdout)
    zoo1, zoo2, zoo3 = scratch_ensemble.hosts.split(",")
    assert lines[0] == f"{zoo1:<22} down"   # paused: it accepts, but never answers
    assert lines[1] == f"{zoo2:<22} down"
    assert lines[2] == f"{zoo3:<22} not serving"
    assert lines[3] == ("no quorum: no server serves, so clients can neither read nor write "
                        "(0 of 3 serving, 1 answering)")

    # --watch follows the recovery.
    watcher = scripts("status.py", "--watch", "--timeout", "1", hosts=scratch_ensemble.hosts)
    scratch_ensemble.run("resume", "1")
    scratch_ensemble.run("start", "2")
    watcher.wait_for(lambda m: m.startswith("quorum: ") and "3 of 3 servers in step" in m,
                     timeout=30)
    assert watcher.stop(signal.SIGINT) == 130
    assert watcher.stderr == ""


def test_a_znode_we_may_not_read_is_shown_not_fatal(ensemble, zk, scripts):
    """A digest-protected znode under /zkdemo: watch.py, get.py and
    acl-lockdown.py --recursive report it and go on."""
    from kazoo.security import make_digest_acl
    zk.ensure_path("/zkdemo")
    watcher = scripts("watch.py", hosts=ensemble.hosts)
    watcher.wait_for(lambda m: m.startswith("watching /zkdemo"))
    zk.create("/zkdemo/private", b"hidden", acl=[make_digest_acl("carol", PASSWORD, all=True)])
    watcher.wait_for(lambda m: m == "created /zkdemo/private (data not readable here: NoAuth)")

    listing = run_script("get.py", "--sync", hosts=ensemble.hosts)
    assert listing.returncode == 0, listing.stderr
    assert messages(listing.stdout)[1] == ("/zkdemo/private (data not readable here: NoAuth)"
                                           "  (not in the election)")

    lockdown = run_script("acl-lockdown.py", "--recursive", hosts=ensemble.hosts)
    undo = run_script("acl-lockdown.py", "--undo", "--recursive", hosts=ensemble.hosts)
    for result in (lockdown, undo):
        assert result.returncode == 0, result.stderr
        assert ("left /zkdemo/private as it is: its ACL does not let this client change it"
                in messages(result.stdout))

    zk.delete("/zkdemo/private")  # DELETE is checked on /zkdemo, which is open
    watcher.wait_for(lambda m: m == "deleted /zkdemo/private")
    assert watcher.stop(signal.SIGINT) == 130
    assert watcher.stderr == ""
