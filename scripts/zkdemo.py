"""What every tutorial script shares: options, connecting, output, errors.

Each script in this folder is a page of the tutorial and reads top to bottom;
the plumbing they all need lives here once:

- the options --hosts (alias --host), --timeout and --source;
- connect(), which starts a kazoo client, logs its connection states
  (suspended, lost, reconnected) and fails with one line when no server answers;
- log(), which prints one timestamped line;
- run(), which turns Ctrl-C, SIGTERM and SIGHUP into a quiet exit after the script's
  own clean-up, and expected failures into one line on stderr.
"""

import argparse
import contextlib
import datetime
import difflib
import errno
import glob
import json
import logging
import os
import re
import signal
import socket
import stat
import sys
import tempfile
import threading
import time

PROG = os.path.basename(sys.argv[0])
if os.path.dirname(os.path.abspath(sys.argv[0])) == os.path.dirname(os.path.abspath(__file__)):
    # A script of ours is starting: Ctrl-C while kazoo loads (a few tenths of
    # a second) ends it quietly, as run() does from then on.
    signal.signal(signal.SIGINT, lambda signum, frame: sys.exit(130))
try:
    from kazoo.client import KazooClient, KazooState
    from kazoo.exceptions import (ConnectionLoss, NoAuthError, NoChildrenForEphemeralsError,
                                  NoNodeError, NodeExistsError, SessionExpiredError)
    from kazoo.handlers.threading import SequentialThreadingHandler
    from kazoo.protocol.serialization import Connect
    from kazoo.security import ACL, Id, OPEN_ACL_UNSAFE, Permissions, make_digest_acl
except ImportError:
    sys.exit(f"{PROG}: kazoo is not installed for {sys.executable}; run `make setup` "
             "and then `. .venv/bin/activate` (or run the script with .venv/bin/python)")

__all__ = ["ROOT", "CONNECTION_ERRORS", "KazooState", "NoAuthError", "NoNodeError",
           "NoChildrenForEphemeralsError",
           "NodeExistsError", "UserError", "log", "make_parser", "positive_number", "ip_port", "connect",
           "disconnect", "client_address", "ensure_root", "in_sequence", "run",
           "ACL", "Id", "OPEN_ACL_UNSAFE", "Permissions", "acl_text", "attempt", "make_digest_acl",
           "run_dir", "open_private", "check_source", "proc_stat", "worker_records", "still_ours",
           "stop_groups", "signals_held", "ELECTION_PREFIX", "elector_sequence",
           "electors", "data_text", "list_root", "refused", "session_timeout",
           "new_session_sent", "ConnectionLoss", "utc_now"]

ROOT = "/zkdemo"   # every znode the tutorial creates lives below this one
ELECTION_PREFIX = "node-"   # create.py's znodes: node- and the 10 digits ZooKeeper appends
_ELECTOR = re.compile(re.escape(ELECTION_PREFIX) + r"(\d{10})")
DEFAULT_HOSTS = "127.0.0.1:2181"
DEFAULT_PORT = 2181

# What a call may raise while the connection is down: the listener reports it.
CONNECTION_ERRORS = (ConnectionLoss, SessionExpiredError)


class UserError(Exception):
    """An expected failure: printed as one line on stderr, then exit `code`."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


class Terminated(BaseException):
    """SIGTERM or SIGHUP (the terminal closed), raised in the main thread so
    that `finally` blocks clean up; args[0] is the signal's number."""


# --- output ------------------------------------------------------------------

_output = threading.Lock()


# Stamps to the millisecond for people; the bench asks for microseconds.
_PRECISION = "microseconds" if os.environ.get("ZKDEMO_LOG_PRECISION") == "us" else "milliseconds"


def utc_now():
    """Now in UTC (without a zone attached). Every stamp the project writes
    is UTC, so the lines of processes in different zones (a lab machine's,
    a learner's terminal) can be put side by side and compared."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def log(message):
    """Print one line, stamped with the time in UTC to the millisecond. Whole
    lines: kazoo's thread and the main thread may log at the same moment."""
    now = utc_now().isoformat(sep=" ", timespec=_PRECISION)
    try:
        with _output:
            sys.stdout.write(f"{now} {message}\n")
            sys.stdout.flush()
    except OSError as e:
        # The reader went (`| head`: EPIPE; a closed terminal: EIO): carry on
        # without output, so the script still finishes and cleans up.
        if e.errno not in (errno.EPIPE, errno.EIO):
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


# --- options -------------------------------------------------------------------

def hosts_list(text):
    """--hosts: HOST[:PORT][,HOST[:PORT]...]; the port defaults to 2181."""
    hosts = []
    for entry in text.split(","):
        entry = entry.strip()
        host, colon, port = entry.rpartition(":") if ":" in entry else (entry, "", "")
        if not host:
            raise argparse.ArgumentTypeError(f"empty host in {text!r} (expected HOST[:PORT],...)")
        if colon:
            if not port.isdigit() or not 1 <= int(port) <= 65535:
                raise argparse.ArgumentTypeError(f"bad port {port!r} in {entry!r} (1 to 65535)")
        hosts.append(f"{host}:{port or DEFAULT_PORT}")
    return ",".join(hosts)


def ip_port(text):
    """IP:PORT (store.py --listen, lock.py --store), as (host, port)."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: expected IP:PORT, such as 127.0.0.1:7000")
    return host, int(port)


def positive_number(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error told in one line rather than the whole
    usage, and a mistyped option named as such."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see --help)\n")

    def parse_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        self.check_options(args)
        return super().parse_args(args, namespace)

    def check_options(self, args):
        """argparse would take the value after a mistyped option (`--sorce
        127.0.0.2`) for a positional argument and complain about that value
        instead: name the option first."""
        known = [option for action in self._actions for option in action.option_strings]
        for arg in args:
            if arg == "--":
                return
            name = arg.split("=", 1)[0]
            if not name.startswith("-") or name == "-" or _is_number(name) or \
                    any(option.startswith(name) for option in known if len(name) > 2):
                continue   # a value, an option, or an abbreviation argparse resolves
            if name in known:
                continue
            close = difflib.get_close_matches(name, known, n=1)
            self.error(f"unknown option {name}" + (f" (did you mean {close[0]}?)" if close else ""))


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def make_parser(doc, connects=True, timeout=10.0):
    """An argument parser whose help is the script's docstring, with the
    options every script that connects to ZooKeeper shares."""
    parser = Parser(description=doc, prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
                    epilog="Lines it logs start with the time in UTC (not local time)." if connects
                    else None)
    if not connects:
        return parser
    default_hosts = os.environ.get("ZKDEMO_HOSTS") or DEFAULT_HOSTS
    parser.add_argument("--hosts", "--host", type=hosts_list, default=hosts_list(default_hosts),
                        metavar="HOST[:PORT],...",
                        help="ZooKeeper servers; kazoo picks among them (default: "
                             f"$ZKDEMO_HOSTS, else {DEFAULT_HOSTS}; port 2181 if omitted)")
    parser.add_argument("--timeout", type=positive_number, default=timeout, metavar="SECONDS",
                        help=f"give up connecting after this long (default {timeout:g})")
    parser.add_argument("--source", metavar="IP",
                        help="connect from this local address; on the loopback ensemble "
                             "--source 127.0.0.2 looks like another machine to IP ACLs")
    return parser


# --- connecting -------------------------------------------------------------

# How kazoo retries after a round of failed connection attempts. Its default
# waits twice as long after every round, up to an hour: after an outage of a
# minute a client whose session is still alive would come back long after the
# servers did, and find its session expired. ZooKeeper's own Java client does
# not back off at all. Ours starts at 0.1 s and never waits more than about 1 s.
RECONNECT = {"max_tries": -1, "delay": 0.1, "backoff": 2, "max_delay": 1.0, "max_jitter": 0.2}


class ConnectionHandler(SequentialThreadingHandler):
    """kazoo's threading handler, with two changes to how it opens a connection:
    an attempt on one server gives up after its share of the session timeout
    (timeout / number of servers, as ZooKeeper's Java client does; kazoo would
    wait the whole session timeout on a server whose packets are dropped), and
    it connects from a chosen local address (--source), when there is one."""

    def __init__(self, source, attempt_timeout):
        super().__init__()
        self.source = source
        self.attempt_timeout = attempt_timeout
        self.refused = set()   # the servers whose machine said nothing listens there
        self.reached = False   # a server accepted a connection

    def create_connection(self, address, timeout=None, **kwargs):
        timeout = min(timeout or self.attempt_timeout, self.attempt_timeout)
        try:
            sock = socket.create_connection(
                address, timeout, source_address=(self.source, 0) if self.source else None)
        except ConnectionRefusedError:
            self.refused.add(tuple(address[:2]))
            raise
        self.reached = True
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


def check_source(source):
    with socket.socket() as s:
        try:
            s.bind((source, 0))
        except OSError:
            raise UserError(f"--source {source}: not an address of this machine", code=2)


def connect(args, session_timeout=10.0, on_state=None, on_client=None):
    """Start a kazoo client on args.hosts within args.timeout seconds.

    Connection states are logged as they change. `on_state(state)` is called
    after logging, from kazoo's thread: it must not block. `on_client(zk)` is
    given the client before it connects, so on_state can ask it about the
    first connection too.
    """
    logging.getLogger("kazoo").setLevel(logging.CRITICAL + 1)  # we report states ourselves
    if args.source:
        check_source(args.source)
    handler = ConnectionHandler(args.source, session_timeout / len(args.hosts.split(",")))
    zk = KazooClient(hosts=args.hosts, timeout=session_timeout, handler=handler,
                     connection_retry=RECONNECT)
    remember_connects(zk)
    if on_client:
        on_client(zk)
    session = {}

    def listener(state):
        if state == KazooState.SUSPENDED:
            log("connection suspended: the session may still be alive; reconnecting")
        elif state == KazooState.LOST:
            log("session lost: ZooKeeper expired it, and its ephemeral znodes are gone")
        elif session:
            same = zk.client_id and zk.client_id[0] == session.get("id")
            log(f"reconnected ({'same session' if same else 'new session'})")
        if state == KazooState.CONNECTED and zk.client_id:
            session["id"] = zk.client_id[0]
        if on_state:
            on_state(state)

    zk.add_listener(listener)
    zk.zkdemo_listener = listener
    servers = len(set(args.hosts.split(",")))
    began, started = time.monotonic(), zk.start_async()
    while not started.wait(timeout=0.1) and (waited := time.monotonic() - began) < args.timeout:
        # Every server refused the connection: nothing listens there, and
        # waiting the whole --timeout would not change that.
        if len(handler.refused) >= servers and not handler.reached and \
                waited >= min(1.0, args.timeout / 2):
            zk.remove_listener(listener)
            raise UserError(f"nothing listens at {args.hosts} (every connection refused)"
                            f"{start_hint(args.hosts) or '; is ZooKeeper running there?'}")
    if not zk.connected:
        # Not zk.stop() (nor zk.start(timeout), which calls it): it waits for
        # kazoo's connection thread, which may sit out a whole session timeout
        # on a server that accepts and never answers. That thread is a daemon
        # and ends with the process.
        zk.remove_listener(listener)
        hint = start_hint(args.hosts) if args.hosts == DEFAULT_HOSTS else ""
        raise UserError(f"cannot reach ZooKeeper at {args.hosts} within {args.timeout:g} s{hint}")
    session["id"] = zk.client_id[0]
    return zk


def start_hint(hosts):
    """How to start the servers named, when they are this machine's own."""
    if hosts == DEFAULT_HOSTS and not os.environ.get("ZKDEMO_HOSTS"):
        return ("; with neither --hosts nor $ZKDEMO_HOSTS that is the default, this "
                "machine's own server: for the loopback ensemble run the `export "
                "ZKDEMO_HOSTS=...` line that `make demo` printed")
    if all(host.startswith("127.") for host in hosts.split(",")):
        return "; is the loopback ensemble running? (`make demo` starts it)"
    return ""


def remember_connects(zk):
    """Keep, at each connect, the session timeout the server granted (it may
    differ from the one asked for: servers clamp it to 2 to 20 ticks) and when
    the connect request that created the session was sent. kazoo 2.11 keeps neither: its connection's
    _invoke() sends the connect request and returns the server's answer
    (kazoo/protocol/connection.py, ConnectionHandler._connect), so this wraps
    it, on this client only. It runs before kazoo tells the listeners that
    the client is connected."""
    invoke = getattr(zk._connection, "_invoke", None)
    if invoke is None:
        raise RuntimeError("this kazoo has no ConnectionHandler._invoke: the granted session "
                           "timeout cannot be learned (requirements.txt pins kazoo 2.11)")

    def _invoke(timeout, request, *args, **kwargs):
        sent = time.monotonic()
        answer = invoke(timeout, request, *args, **kwargs)
        if isinstance(request, Connect) and answer[0].time_out > 0:
            new = sent if request.session_id == 0 else None
            zk.zkdemo_connect = (answer[0].time_out / 1000.0, sent, new)
        return answer

    zk._connection._invoke = _invoke
    zk.zkdemo_connect = None


def session_timeout(zk):
    """The session timeout, in seconds, the server granted this client."""
    if zk.zkdemo_connect is None:
        raise RuntimeError("session_timeout() before the first connect")
    return zk.zkdemo_connect[0]


def new_session_sent(zk):
    """When (time.monotonic()) the connect request that created this session
    was sent, if the last connect created it; None after a reconnect. A new
    session is a write that ZooKeeper's leader commits with a quorum
    (PrepRequestProcessor, OpCode.createSession: it starts the session's
    clock), so the session lives at least a session timeout from that moment.
    A reconnect proves less: the server renews the session with the leader it
    knows, which may itself be cut off from the majority."""
    return zk.zkdemo_connect[2]


def disconnect(zk, wait=1.0):
    """Close the session, so ZooKeeper deletes its ephemeral znodes at once
    (not a session timeout later). Our own closing is not reported as a loss.

    A server that is up answers a close within milliseconds. One that hangs,
    or a connection still being retried, would keep kazoo's stop() waiting up
    to a session timeout, so the script waits at most `wait` seconds (none
    while it is not connected: there is no session to close just then) and
    then goes; ZooKeeper expires the session in its own time."""
    zk.remove_listener(zk.zkdemo_listener)
    closing = threading.Thread(target=_close, args=(zk,), daemon=True)
    closing.start()
    closing.join(wait if zk.connected else 0)


def _close(zk):
    try:
        zk.stop()
        zk.close()
    except Exception:
        pass   # a close that did not finish: the process is on its way out


def client_address(args):
    """The address this machine connects to ZooKeeper from (what IP ACLs see)."""
    if args.source:
        return args.source
    host, port = args.hosts.split(",")[0].rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, int(port)))  # sends nothing: it only picks the route
        return s.getsockname()[0]


def acl_text(acls):
    """ACLs as zkCli.sh shows them: scheme:id:perms, perms from cdrwa."""
    letters = [(Permissions.CREATE, "c"), (Permissions.DELETE, "d"), (Permissions.READ, "r"),
               (Permissions.WRITE, "w"), (Permissions.ADMIN, "a")]
    return ", ".join(f"{acl.id.scheme}:{acl.id.id}:"
                     + "".join(letter for bit, letter in letters if acl.perms & bit)
                     for acl in acls)


def attempt(what, operation, *args, **kwargs):
    """Run one ZooKeeper operation and print whether ZooKeeper allowed it."""
    try:
        operation(*args, **kwargs)
        log(f"  {what:<38} allowed")
        return True
    except NoAuthError:
        log(f"  {what:<38} denied (NoAuth)")
        return False


def refused(zk, path, doing):
    """The UserError for a NoAuth from `path`: it names the znode's ACL, when
    this client may read it, and says how to undo the lock."""
    undo = (f"acl-lockdown.py --undo --recursive, or in zkCli.sh "
            f"`setAcl -R {path} world:anyone:cdrwa`")
    try:
        acl = acl_text(zk.get_acls(path)[0])
    except NoAuthError:
        return UserError(f"ZooKeeper refused to {doing} (NoAuth): the ACL of {path} lets this "
                         f"client neither read it nor see the ACL; on a client it lets in, "
                         f"zkCli.sh `getAcl {path}` shows it and {undo} undoes it")
    return UserError(f"ZooKeeper refused to {doing} (NoAuth): the ACL of {path} is {acl}; "
                     f"to undo it, run on a client that ACL lets in: {undo}")


def list_root(zk, **kwargs):
    """zk.get_children(ROOT, **kwargs); NoNodeError when /zkdemo is missing,
    and a UserError naming its ACL when this client may not list it."""
    try:
        return zk.get_children(ROOT, **kwargs)
    except NoAuthError:
        raise refused(zk, ROOT, f"list {ROOT}")


def elector_sequence(name):
    """The sequence number of one of create.py's znodes, or None when `name`
    is not one. Other clients share /zkdemo (a learner's zkCli.sh, say); a
    znode of theirs must never take part in the election, whatever its name."""
    match = _ELECTOR.fullmatch(name)
    return int(match.group(1)) if match else None


def electors(children):
    """create.py's znodes among `children`, lowest sequence number (the leader) first."""
    return sorted((c for c in children if elector_sequence(c) is not None), key=elector_sequence)


def data_text(data):
    """A znode's data as one printable line: text as it is, else a short note."""
    if not data:
        return "(no data)"
    try:
        text = data.decode()
    except UnicodeDecodeError:
        shown = data[:16].hex(" ")
        return f"({len(data)} bytes, not text: {shown}{' ...' if len(data) > 16 else ''})"
    return text if text.isprintable() else text.encode("unicode_escape").decode()


def ensure_root(zk):
    """Create /zkdemo when it is missing."""
    try:
        zk.ensure_path(ROOT)
    except NoAuthError:
        raise UserError(f"ZooKeeper refused to create {ROOT} (NoAuth): the ACL of / does not "
                        "let this client create znodes; acl-lockdown.py --undo opens it")


def sequence_number(name):
    """The number ZooKeeper appended to a sequential znode's name (-1 if none)."""
    match = re.search(r"(\d{10})$", name)
    return int(match.group(1)) if match else -1


def in_sequence(names):
    """Names (or paths) in the order ZooKeeper created sequential ones; the
    others first, by name."""
    return sorted(names, key=lambda name: (sequence_number(name), name))


def run_dir():
    """Where create-start.py keeps its records and logs ($ZKDEMO_RUN_DIR).
    /tmp is shared: another user could have made the folder first and filled
    it with links or worker records. So it must be a folder of this user's
    own (not a link), that nobody else may write to."""
    path = os.environ.get("ZKDEMO_RUN_DIR") or os.path.join(tempfile.gettempdir(),
                                                            f"zkdemo-{os.getuid()}")
    for folder in (path, os.path.join(path, "workers")):
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            info = os.lstat(folder)
        except FileExistsError:   # a file, or a link to nothing, in its place
            info = os.lstat(folder)
        except OSError as e:
            raise UserError(f"cannot make the folder {folder}: {e.strerror}; set "
                            "ZKDEMO_RUN_DIR to a folder of your own")
        if not stat.S_ISDIR(info.st_mode):
            raise UserError(f"{folder} is not a folder (a file, or a link): remove it, or set "
                            "ZKDEMO_RUN_DIR to a folder of your own")
        if info.st_uid != os.getuid():
            raise UserError(f"{folder} belongs to another user (uid {info.st_uid}): remove "
                            "it, or set ZKDEMO_RUN_DIR to a folder of your own")
        if info.st_mode & 0o022:
            raise UserError(f"{folder} may be written by other users (mode "
                            f"{stat.S_IMODE(info.st_mode):o}): `chmod go-w {folder}`, or "
                            "set ZKDEMO_RUN_DIR to a folder of your own")
    return path


def open_private(path, how="r"):
    """Open a file in run_dir() as `open(path, how)` does, but never through
    a link put in its place; "x" makes a new file, and nothing already there
    (a link included) is taken for it. New files are the user's alone."""
    flags = {"r": os.O_RDONLY, "a": os.O_WRONLY | os.O_APPEND | os.O_CREAT,
             "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL}[how[0]]
    try:
        return os.fdopen(os.open(path, flags | os.O_NOFOLLOW, 0o600), how)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UserError(f"{path} is a link, and links there are not followed: remove it")
        if e.errno == errno.EEXIST:
            raise UserError(f"{path} is already there, and it should be new: remove it")
        raise


def proc_stat(path):
    """(state, process group, start time) from a /proc/PID/stat, or None if the
    process is gone. A pid and its start time together name one process: create-
    start.py records them, create-stop.py checks them before it signals."""
    try:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()  # the name may hold spaces
    except OSError:
        return None
    return fields[0], int(fields[2]), int(fields[19])


def worker_records():
    """(file, record) for each worker create-start.py recorded; the record is
    None when the file cannot be read."""
    records = []
    for path in sorted(glob.glob(os.path.join(run_dir(), "workers", "*.json"))):
        try:
            with open_private(path) as f:
                records.append((path, json.load(f)))
        except (OSError, ValueError):
            records.append((path, None))
    return records


def still_ours(record):
    """True if the recorded worker is alive and is the process we started."""
    pid = record["pid"]
    stat = proc_stat(f"/proc/{pid}/stat")
    return stat is not None and stat[0] != "Z" and stat[1:] == (pid, record["start_time"])


def group_alive(pgid):
    """True while a process of the group runs. An exited worker stays a zombie
    until init reaps it, and kill(0) would still find it: read /proc instead."""
    stats = filter(None, map(proc_stat, glob.glob("/proc/[0-9]*/stat")))
    return any(state != "Z" and group == pgid for state, group, _ in stats)


def stop_groups(groups, grace):
    """SIGTERM each process group (a worker and its create.py, which deletes
    its znode as it exits), SIGKILL what is left after `grace` seconds.
    Returns the groups that needed SIGKILL."""
    for pgid in groups:
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(map(group_alive, groups)) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed = [pgid for pgid in groups if group_alive(pgid)]
    for pgid in killed:
        os.killpg(pgid, signal.SIGKILL)
    return killed


@contextlib.contextmanager
def signals_held():
    """Ctrl-C, SIGTERM and SIGHUP wait until the block ends, so that what it
    starts it also records (or stops). Inside, the list it gives holds the
    signals that came; when the block ends the first one takes effect."""
    came = []
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM,
                                                         signal.SIGHUP)}
    for sig, handler in handlers.items():
        if handler is not signal.SIG_IGN:   # under nohup, SIGHUP stays ignored
            signal.signal(sig, lambda signum, frame: came.append(signum))
    try:
        yield came
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    if came:
        if came[0] == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(came[0])


# --- running a script ---------------------------------------------------------

def _terminate(signum, frame):
    raise Terminated(signum)


def run(main):
    """Run main(); exit quietly on Ctrl-C, SIGTERM or SIGHUP, with one line on errors."""
    signal.signal(signal.SIGTERM, _terminate)
    if signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:   # not under `nohup`
        signal.signal(signal.SIGHUP, _terminate)
    # Ctrl-C, even when started from a shell script's `&`, which ignores SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = main()
    except KeyboardInterrupt:
        code = 130
    except Terminated as e:
        code = 128 + e.args[0]   # 143 for SIGTERM, 129 for SIGHUP, as a shell reports them
    except UserError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        code = e.code
    except NoAuthError as e:
        print(f"{PROG}: ZooKeeper refused: no permission (NoAuth){describe(e)}", file=sys.stderr)
        code = 1
    except CONNECTION_ERRORS as e:
        print(f"{PROG}: lost the connection to ZooKeeper ({type(e).__name__})", file=sys.stderr)
        code = 1
    finally:
        # The clean-up is done. A signal from now on, while Python shuts down
        # (and waits for kazoo's threads), simply ends the process.
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
    sys.exit(code or 0)


def describe(error):
    return f": {error.args[0]}" if error.args and error.args[0] else ""
