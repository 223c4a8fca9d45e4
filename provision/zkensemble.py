"""What provision/local-cluster.py (the loopback ensemble) and provision/lab.py
(three namespace machines) share: reading config/, asking a server `srvr`, and
waiting for a condition. Standard library only: both run before the .venv.

    python3 zkensemble.py srvr HOST PORT    print a server's answer to srvr
                                            (the lab runs this inside a machine)
"""

import argparse
import contextlib
import datetime
import errno
import os
import signal
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, "config")
SERVING = ("leader", "follower", "standalone")


def read_config():
    """Return (settings, nodes): zoo.cfg as ordered (key, value) pairs and
    config/nodes as a list of (name, myid)."""
    settings = []
    with open(os.path.join(CONFIG_DIR, "zoo.cfg")) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                key, _, value = line.partition("=")
                settings.append((key.strip(), value.strip()))
    nodes = []
    with open(os.path.join(CONFIG_DIR, "nodes")) as f:
        for line in f:
            fields = line.split("#")[0].split()
            if fields:
                nodes.append((fields[0], int(fields[1])))
    return settings, nodes


def server_addresses(settings):
    """{myid: address} from zoo.cfg's server.N=address:port:port lines."""
    return {int(key.split(".", 1)[1]): value.split(":", 1)[0]
            for key, value in settings if key.startswith("server.")}


def srvr_text(host, port, timeout=1.0):
    """A server's raw answer to `srvr`, or None when nothing answers."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"srvr")
            chunks = []
            while data := s.recv(4096):
                chunks.append(data)
    except OSError:
        return None
    return b"".join(chunks).decode(errors="replace")


def parse_srvr(text):
    """srvr's answer as a dict ({"Mode": "not serving"} when it has no
    quorum), or None when there was no answer."""
    if not text:
        return None
    if "not currently serving" in text:
        return {"Mode": "not serving"}
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info or None


class ToolError(Exception):
    """Something the user must know or fix: one line on stderr, exit 1."""


class UsageError(ToolError):
    """Bad input that only shows after parsing: one line, exit 2."""


def run_tool(prog, main):
    """Run a tool's main() and give its exit code: an error it expects is one
    line on stderr, named after the tool; Ctrl-C, SIGTERM and SIGHUP end it
    quietly with 130, each after the tool's own clean-up."""
    stop_as_ctrl_c()
    try:
        return main() or 0
    except ToolError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
    except KeyboardInterrupt:
        return 130


STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# The first stop signal raises KeyboardInterrupt; any later one, and any that
# comes during a clean-up, is held: the tool is on its way out, and a second
# Ctrl-C (a terminal sends it to the whole group; make passes SIGTERM on)
# must not cut short what stops what it started.
_STOPPING = {"stopping": False, "holding": 0, "held": []}


def _stop(signum, frame):
    if os.getpid() != _STOPPING.get("pid"):
        # A child forked to run a command, not yet the command (a preexec_fn
        # runs Python there): the group's signal ends it as it would the command.
        os._exit(128 + signum)
    if _STOPPING["stopping"] or _STOPPING["holding"]:
        _STOPPING["held"].append(signum)
        return
    _STOPPING["stopping"] = True
    raise KeyboardInterrupt


def own_group():
    """subprocess's process_group for a command started now: a group of its
    own during a clean-up (or once the tool is stopping), so that a second
    Ctrl-C at the terminal does not reach it; the tool's group otherwise."""
    return 0 if _STOPPING["stopping"] or _STOPPING["holding"] > 0 else None


class _Unread:
    """A standard stream that falls silent once its reader has gone (the tool's
    output piped into `head`, a parent killed, the terminal closed): instead of
    raising in the middle of a clean-up, what follows goes to /dev/null, and
    so does the output of any process started from then on."""

    def __init__(self, stream):
        self._stream = stream

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def _quiet(self, method, *args):
        try:
            return getattr(self._stream, method)(*args)
        except OSError as e:   # EPIPE from a pipe, EIO from a terminal that has gone
            if e.errno not in (errno.EPIPE, errno.EIO):
                raise
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())
            os.close(null)
            return getattr(self._stream, method)(*args)

    def write(self, text):
        return self._quiet("write", text)

    def flush(self):
        return self._quiet("flush")


def stop_as_ctrl_c():
    """SIGTERM (a kill, a CI's time limit) and SIGHUP (a closed terminal) stop
    the tool as Ctrl-C does: KeyboardInterrupt, so that every `finally` runs
    and stops what the tool started. SIGINT too, in case the tool was started
    where it is ignored (a background job of a script); SIGHUP not when it is
    ignored (`nohup`). Output to a reader that has gone is dropped, not raised."""
    _STOPPING["pid"] = os.getpid()
    for sig in STOPS:
        if not (sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN):
            signal.signal(sig, _stop)
    if not isinstance(sys.stdout, _Unread):
        sys.stdout, sys.stderr = _Unread(sys.stdout), _Unread(sys.stderr)


def run_to_its_end(command, timeout=None, grace=600, **kwargs):
    """subprocess.run for a tool that cleans up after itself (lab.py up,
    chaos.py): when this process is stopped (Ctrl-C, SIGTERM, SIGHUP), the
    tool gets SIGTERM too, in case the signal was not sent to it, and is
    waited for, up to `grace` seconds, while it cleans up. subprocess.run
    would SIGKILL it a quarter of a second later, in the middle of that."""
    process = None
    try:
        process = subprocess.Popen(command, **kwargs)
        out, err = process.communicate(timeout=timeout)
    except KeyboardInterrupt:
        with cleaning_up():
            if process:
                process.send_signal(signal.SIGTERM)
                try:
                    process.communicate(timeout=grace)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.communicate()
        raise
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return subprocess.CompletedProcess(command, process.returncode, out, err)


@contextlib.contextmanager
def cleaning_up():
    """A clean-up that a second Ctrl-C (or SIGTERM, SIGHUP) must not cut
    short: the stop signals that arrive during it are held, and raised as
    KeyboardInterrupt once it is done, unless the tool is stopping already."""
    _STOPPING["holding"] += 1
    try:
        yield
    finally:
        _STOPPING["holding"] -= 1
    if _STOPPING["held"] and not _STOPPING["holding"] and not _STOPPING["stopping"]:
        _STOPPING["stopping"] = True
        raise KeyboardInterrupt


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error told in one line (exit 2), named after
    the tool: `lab.py: ... (see --help)`, also from a subcommand's parser."""

    def error(self, message):
        self.exit(2, f"{self.prog.split()[0]}: {message} (see --help)\n")


def stamp():
    """Now, as the scripts stamp their lines: in UTC, to the millisecond."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@contextlib.contextmanager
def recorded(folder, what):
    """Note in folder/events.log when a command that changes the ensemble
    (kill zoo2, partition zoo3, heal...) began and ended: provision/timeline.py
    draws them as bands; one that failed is noted as such, and drawn as
    nothing. Nothing is noted where the folder does not exist."""
    def note(word):
        if os.path.isdir(folder):   # not for an ensemble or lab that does not exist
            with open(os.path.join(folder, "events.log"), "a") as f:
                f.write(f"{stamp()} {word} {what}\n")
    note("begin")
    try:
        yield
    except BaseException:
        note("failed")   # it changed nothing, or not as it meant to
        raise
    note("end")


def wait_for(condition, seconds, interval=0.1):
    """Poll condition() until it is true (True) or `seconds` pass (False)."""
    deadline = time.monotonic() + seconds
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "srvr":
        answer = srvr_text(sys.argv[2], int(sys.argv[3]))
        sys.exit(print(answer, end="") if answer is not None else 1)
    sys.exit("usage: zkensemble.py srvr HOST PORT")
