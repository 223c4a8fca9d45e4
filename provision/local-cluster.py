#!/usr/bin/env python3
"""Run the tutorial's three-server ZooKeeper ensemble on loopback addresses.

The Vagrant VMs run zoo1, zoo2 and zoo3 at 10.0.10.101-103. On Linux the whole
of 127.0.0.0/8 is loopback, so the same three servers can run on one machine at
127.0.10.101-103, each on the usual ports (2181 for clients, 2888 and 3888 for
the quorum). Every setting comes from config/zoo.cfg; only the addresses, the
data directory and, with --tick-time, the tick are changed.

    local-cluster.py up                 start all three, wait for a quorum
    local-cluster.py status             address, pid and mode of each server;
                                        exit 1 when they have no quorum
    local-cluster.py kill 2             SIGKILL zoo2
    local-cluster.py kill leader        SIGKILL whichever server leads now
    local-cluster.py start 2            start it again; it rejoins as follower
    local-cluster.py pause 1 / resume 1 SIGSTOP / SIGCONT: a server that hangs
    local-cluster.py stop 3             stop one server cleanly (SIGTERM)
    local-cluster.py down               stop them all

Uses only the Python standard library, so it runs before `make setup` has
made the .venv. ZooKeeper comes from Debian's zookeeper package or from an
Apache release unpacked at $ZOOKEEPER_HOME.
"""

import argparse
import glob
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from zkensemble import (REPO, SERVING, Parser, ToolError, UsageError, parse_srvr, read_config,
                        recorded, run_tool, srvr_text, wait_for)

DEFAULT_IPS = "127.0.10.101,127.0.10.102,127.0.10.103"
COMMANDS = ("up", "down", "status", "start", "stop", "kill", "pause", "resume")
PER_SERVER = ("start", "stop", "kill", "pause", "resume")

LOG4J = """\
log4j.rootLogger=INFO, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} [myid:%X{myid}] - %-5p [%t:%C{1}@%L] - %m%n
"""
LOGBACK = """\
<configuration>
  <appender name="CONSOLE" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d{ISO8601} [myid:%X{myid}] - %-5p [%t:%C{1}@%L] - %m%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="CONSOLE"/></root>
</configuration>
"""


class ClusterError(ToolError):
    """Something the user must fix; printed as one line, exit 1."""


# --- configuration ---------------------------------------------------------

def render_zoo_cfg(settings, nodes, ips, myid, data_dir, tick_time):
    """zoo.cfg for one loopback server: the VMs' file with loopback addresses."""
    address_of = {nid: ip for (_, nid), ip in zip(nodes, ips)}
    lines = ["# Rendered by provision/local-cluster.py from config/zoo.cfg"]
    for key, value in settings:
        if key == "tickTime" and tick_time:
            value = str(tick_time)
        elif key == "dataDir":
            value = data_dir
        elif key.startswith("server."):
            nid = int(key.split(".", 1)[1])
            value = address_of[nid] + value[value.index(":"):]
        lines.append(f"{key}={value}")
        if key == "clientPort":
            # Three servers share one machine: each listens on its own address.
            lines.append(f"clientPortAddress={address_of[myid]}")
    return "\n".join(lines) + "\n"


def client_port(settings):
    return int(dict(settings)["clientPort"])


# --- finding ZooKeeper and Java -------------------------------------------

def find_java():
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        raise ClusterError("Java not found: install Debian's zookeeper package "
                           "(`make setup`), which brings a JRE, or set JAVA_HOME")
    return java


def find_classpath():
    home = os.environ.get("ZOOKEEPER_HOME")
    if home:
        jars = sorted(glob.glob(os.path.join(home, "lib", "*.jar")) +
                      glob.glob(os.path.join(home, "*.jar")))
        if not any("zookeeper" in os.path.basename(j) for j in jars):
            raise ClusterError(f"no ZooKeeper jars in ZOOKEEPER_HOME={home} "
                               "(expected an Apache release with lib/*.jar)")
        return os.pathsep.join(jars)
    debian = "/usr/share/java"
    jars = [os.path.join(debian, j) for j in
            ("zookeeper.jar", "slf4j-log4j12.jar", "log4j-1.2.jar")]
    if not os.path.exists(jars[0]):
        raise ClusterError("ZooKeeper not found: run `make setup` (installs Debian's "
                           "zookeeper package) or set ZOOKEEPER_HOME to an Apache release")
    return os.pathsep.join(j for j in jars if os.path.exists(j))


# --- the servers -------------------------------------------------------------

class Server:
    def __init__(self, name, myid, ip, port, state_dir):
        self.name, self.myid, self.ip, self.port = name, myid, ip, port
        self.dir = os.path.join(state_dir, name)
        self.cfg = os.path.join(self.dir, "zoo.cfg")
        self.log = os.path.join(self.dir, "zookeeper.log")
        self.pidfile = os.path.join(self.dir, "pid")

    @property
    def address(self):
        return f"{self.ip}:{self.port}"

    def pid(self):
        """The pid of this server's JVM, or None. A recorded pid counts only
        while that process is still a ZooKeeper started on our zoo.cfg: pids
        are reused, and we must never signal someone else's process."""
        try:
            with open(self.pidfile) as f:
                pid = int(f.read().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().split(b"\0")
        except (OSError, ValueError):
            return None
        if self.cfg.encode() in cmdline and any(b"QuorumPeerMain" in a for a in cmdline):
            return pid
        return None

    def process_state(self, pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return "X"

    def srvr(self, timeout=1.0):
        """Ask the server `srvr`; return its answer as a dict, or None."""
        return parse_srvr(srvr_text(self.ip, self.port, timeout))

    def mode(self):
        """leader / follower / standalone / not serving / starting / paused / down"""
        pid = self.pid()
        if pid is None:
            return "down"
        state = self.process_state(pid)
        if state in ("T", "t"):
            return "paused"
        if state in ("Z", "X"):
            return "down"
        info = self.srvr()
        return info.get("Mode", "starting") if info else "starting"


def check_ports_free(server, ports):
    """Fail early, with a clear line, when another process holds our ports."""
    for port in ports:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((server.ip, port))
            except OSError as e:
                if e.errno == 99:  # EADDRNOTAVAIL
                    raise ClusterError(f"{server.name}: this machine has no address "
                                       f"{server.ip} (on Linux all of 127.0.0.0/8 is loopback)")
                raise ClusterError(f"{server.name}: {server.ip}:{port} is already in use "
                                   "by another process; stop it or choose --ips")


def tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no log written)\n"


class Ensemble:
    def __init__(self, state_dir, ips=None, tick_time=None):
        self.state_dir = os.path.abspath(state_dir)
        self.settings, self.nodes = read_config()
        recorded = self._read_record()
        running = recorded and any(
            Server(n, i, ip, client_port(self.settings), self.state_dir).pid()
            for (n, i), ip in zip(self.nodes, recorded["ips"]))
        if ips and recorded and running and ips != recorded["ips"]:
            raise ClusterError(f"the ensemble in {self.state_dir} is running on "
                               f"{','.join(recorded['ips'])}; run `down` before changing --ips")
        self.ips = ips or (recorded or {}).get("ips") or DEFAULT_IPS.split(",")
        self.tick_time = tick_time or (recorded or {}).get("tick_time")
        if len(self.ips) != len(self.nodes):
            raise ClusterError(f"--ips needs {len(self.nodes)} addresses, got {len(self.ips)}")
        port = client_port(self.settings)
        self.servers = [Server(n, i, ip, port, self.state_dir)
                        for (n, i), ip in zip(self.nodes, self.ips)]

    def _record_path(self):
        return os.path.join(self.state_dir, "ensemble.json")

    def _read_record(self):
        try:
            with open(self._record_path()) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def _write_record(self):
        os.makedirs(self.state_dir, exist_ok=True)
        with open(self._record_path(), "w") as f:
            json.dump({"ips": self.ips, "tick_time": self.tick_time}, f)

    def server(self, which):
        if which == "leader":
            # Whichever server leads now: the one worth killing in a tour.
            leader = self.leader(self.modes())
            if leader is None:
                raise ClusterError("no server leads now (local-cluster.py status shows why)")
            which = leader
        for s in self.servers:
            if which in (s.name, str(s.myid)):
                return s
        names = ", ".join(f"{s.myid} ({s.name})" for s in self.servers)
        raise UsageError(f"no server {which!r}: choose one of {names}, or leader")

    def hosts(self):
        return ",".join(s.address for s in self.servers)

    # -- starting and stopping

    def start(self, server):
        """Start one server unless it already runs. Returns True if started."""
        if server.pid():
            return False
        quorum_ports = [int(p) for p in dict(self.settings)[f"server.{server.myid}"]
                        .split(":")[1:3]]
        check_ports_free(server, [server.port] + quorum_ports)
        java, classpath = find_java(), find_classpath()
        data_dir = os.path.join(server.dir, "data")
        os.makedirs(data_dir, exist_ok=True)
        with open(os.path.join(data_dir, "myid"), "w") as f:
            f.write(f"{server.myid}\n")
        with open(server.cfg, "w") as f:
            f.write(render_zoo_cfg(self.settings, self.nodes, self.ips, server.myid,
                                   data_dir, self.tick_time))
        for name, text in (("log4j.properties", LOG4J), ("logback.xml", LOGBACK)):
            with open(os.path.join(server.dir, name), "w") as f:
                f.write(text)
        command = [
            java, "-Xmx256m", "-XX:+UseSerialGC",
            f"-Dzookeeper.log.dir={server.dir}",
            f"-Dlog4j.configuration=file:{os.path.join(server.dir, 'log4j.properties')}",
            f"-Dlogback.configurationFile={os.path.join(server.dir, 'logback.xml')}",
            "-cp", classpath,
            "org.apache.zookeeper.server.quorum.QuorumPeerMain", server.cfg,
        ]
        with open(server.log, "ab") as log:
            # A session of its own: Ctrl-C in the user's terminal does not reach
            # the servers, and they outlive this command.
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    cwd=server.dir)
        with open(server.pidfile, "w") as f:
            f.write(f"{proc.pid}\n")
        # Until the child has exec'd java, its command line is still ours.
        wait_for(lambda: proc.poll() is not None or server.pid() is not None, 10.0)
        return True

    def signal(self, server, sig):
        pid = server.pid()
        if pid is None:
            return False
        os.kill(pid, sig)
        return True

    def stop(self, server, grace=10.0):
        """SIGTERM, then SIGKILL after `grace` seconds. Returns True if it ran."""
        pid = server.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGCONT)  # a paused server cannot act on SIGTERM
        if not wait_for(lambda: server.pid() is None, grace):
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: server.pid() is None, 5.0)
        try:
            os.remove(server.pidfile)
        except OSError:
            pass
        return True

    # -- looking at it

    def modes(self):
        return {s.name: s.mode() for s in self.servers}

    def leader(self, modes):
        return next((n for n, m in modes.items() if m in ("leader", "standalone")), None)

    def has_quorum(self, modes):
        serving = sum(m in SERVING for m in modes.values())
        return self.leader(modes) is not None and serving > len(self.servers) // 2

    def fail_if_exited(self, started):
        for s in started:
            if s.pid() is None:
                raise ClusterError(f"{s.name} exited during start-up; the end of {s.log}:\n"
                                   + tail(s.log))


def shown_path(path):
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def print_table(ensemble, modes):
    for s in ensemble.servers:
        pid = s.pid()
        print(f"{s.name}  {s.address:<21} pid {pid or '-':<8} {modes[s.name]}")


# --- the subcommands ---------------------------------------------------------

def cmd_up(ensemble, args):
    ensemble._write_record()
    started = [s for s in ensemble.servers if ensemble.start(s)]
    for s in ensemble.servers:
        print(f"{s.name}  {s.address}  {'starting' if s in started else 'already running'}"
              f"  (log: {shown_path(s.log)})")
    shown = None
    deadline = time.monotonic() + args.wait
    while True:
        ensemble.fail_if_exited(started)
        modes = ensemble.modes()
        if set(modes.values()) <= set(SERVING):
            break
        if time.monotonic() >= deadline:
            break
        progress = ", ".join(f"{n} {m}" for n, m in modes.items())
        if progress != shown:
            print(f"waiting for a quorum: {progress}", file=sys.stderr, flush=True)
            shown = progress
        time.sleep(0.2)
    print_table(ensemble, modes)
    if not ensemble.has_quorum(modes):
        late = [s for s in ensemble.servers if modes[s.name] not in SERVING]
        details = "".join(f"--- end of {s.log}\n{tail(s.log)}" for s in late)
        raise ClusterError(f"no quorum within {args.wait:g} s\n{details}".rstrip())
    print(f"quorum: leader is {ensemble.leader(modes)}")
    print(f"connect with: --hosts {ensemble.hosts()}")
    print(f"      or run: export ZKDEMO_HOSTS={ensemble.hosts()}")


def cmd_down(ensemble, args):
    for s in ensemble.servers:
        print(f"{s.name}  {'stopped' if ensemble.stop(s) else 'was not running'}")


def cmd_status(ensemble, args):
    modes = ensemble.modes()
    print_table(ensemble, modes)
    leader = ensemble.leader(modes)
    if ensemble.has_quorum(modes):
        print(f"quorum: leader is {leader}")
        return 0
    print("no quorum: clients cannot read or write")
    return 1


def cmd_start(ensemble, args):
    server = ensemble.server(args.server)
    if not ensemble.start(server):
        print(f"{server.name}  already running, {server.mode()}")
        return
    # It serves once it has joined a quorum; alone it can only answer srvr.
    alive = sum(s.pid() is not None for s in ensemble.servers)
    can_serve = alive > len(ensemble.servers) // 2
    wait_for(lambda: server.pid() is None or server.mode() in
             (SERVING if can_serve else SERVING + ("not serving",)), args.wait)
    ensemble.fail_if_exited([server])
    print(f"{server.name}  {server.address}  started, {server.mode()}")


def cmd_stop(ensemble, args):
    server = ensemble.server(args.server)
    print(f"{server.name}  {'stopped' if ensemble.stop(server) else 'was not running'}")


SIGNALS = {"kill": (signal.SIGKILL, "killed (SIGKILL)"),
           "pause": (signal.SIGSTOP, "paused (SIGSTOP): it holds its connections but answers nothing"),
           "resume": (signal.SIGCONT, "resumed (SIGCONT)")}


def cmd_signal(ensemble, args):
    server = ensemble.server(args.server)
    sig, done = SIGNALS[args.command]
    if not ensemble.signal(server, sig):
        raise ClusterError(f"{server.name} is not running")
    if args.command == "kill":
        wait_for(lambda: server.pid() is None or server.mode() == "down", 5.0)
    print(f"{server.name}  {done}")


def parse_ips(text):
    ips = [part.strip() for part in text.split(",")]
    for ip in ips:
        try:
            address = ipaddress.IPv4Address(ip)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{ip!r} is not an IPv4 address")
        if not address.is_loopback:
            raise argparse.ArgumentTypeError(
                f"{ip} is not a loopback address: this command runs servers on this "
                "machine only (use 127.x.y.z)")
    if len(set(ips)) != len(ips):
        raise argparse.ArgumentTypeError("the addresses must differ")
    return ips


def positive_number(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def tick_time(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of milliseconds")
    if not 10 <= value <= 60000:
        raise argparse.ArgumentTypeError(f"must be 10 to 60000 ms, got {text}")
    return value


def parse_args(argv):
    parser = Parser(
        prog="local-cluster.py", description=__doc__.split("\n\n")[0],
        epilog="Servers: 1, 2, 3 (or zoo1, zoo2, zoo3), or leader: the one that leads now.")
    parser.add_argument("command", choices=COMMANDS, metavar="COMMAND",
                        help="one of: " + ", ".join(COMMANDS))
    parser.add_argument("server", nargs="?", metavar="N",
                        help="the server, for start, stop, kill, pause and resume")
    parser.add_argument("--ips", type=parse_ips, metavar="A,B,C",
                        default=os.environ.get("ZKDEMO_IPS") or None,
                        help=f"loopback addresses of the three servers (default: $ZKDEMO_IPS, "
                             f"else what `up` last used in this state dir, else {DEFAULT_IPS})")
    parser.add_argument("--state-dir", metavar="DIR",
                        default=os.environ.get("ZKDEMO_STATE_DIR") or os.path.join(REPO, ".zkdemo"),
                        help="where data, logs and pids live (default: $ZKDEMO_STATE_DIR, "
                             "else .zkdemo/ in the repo)")
    parser.add_argument("--tick-time", type=tick_time, metavar="MS",
                        help="ZooKeeper's tick; shorter makes session expiry quicker "
                             "(default: tickTime from config/zoo.cfg)")
    parser.add_argument("--wait", type=positive_number, default=60.0, metavar="SECONDS",
                        help="how long up/start wait for the servers to serve (default 60)")
    args = parser.parse_args(argv)
    if args.command in PER_SERVER and args.server is None:
        parser.error(f"{args.command} needs a server: 1, 2 or 3")
    if args.command not in PER_SERVER and args.server is not None:
        parser.error(f"{args.command} takes no server")
    return args


def main(argv=None):
    args = parse_args(argv)
    handlers = {"up": cmd_up, "down": cmd_down, "status": cmd_status,
                "start": cmd_start, "stop": cmd_stop}
    ensemble = Ensemble(args.state_dir, args.ips, args.tick_time)
    handler = handlers.get(args.command, cmd_signal)
    if args.command == "up":   # it starts what is not running: the end of a kill or stop
        with recorded(ensemble.state_dir, "up"):
            return handler(ensemble, args)
    if args.command not in PER_SERVER:
        return handler(ensemble, args)
    args.server = ensemble.server(args.server).name   # `leader` names one server, once
    with recorded(ensemble.state_dir, f"{args.command} {args.server}"):
        return handler(ensemble, args)


if __name__ == "__main__":
    sys.exit(run_tool("local-cluster.py", main))
