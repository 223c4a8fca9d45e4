#!/usr/bin/env python3
"""The three machines without VMs: zoo1, zoo2 and zoo3 as Linux network
namespaces at the VMs' addresses, each with a Debian bookworm root of its own,
provisioned by provision/zookeeper.sh exactly as Vagrant provisions a VM.

    lab.py up [zooN]            make the machines (or start a halted one)
    lab.py status               machines, addresses, ZooKeeper mode, memory
    lab.py ssh zooN [-- CMD]    a login shell on zooN in /vagrant, or run CMD
                                there: one word is a shell command line, as
                                `vagrant ssh zooN -c 'CMD'` takes it; several
                                are one command with its words kept as given
    lab.py halt zooN            stop a machine: its processes and its link go
    lab.py kill zooN...         kill -9 the ZooKeeper server on zooN (the machine stays up)
    lab.py start zooN...        start it again
    lab.py pause zooN...        stop it with SIGSTOP: it holds its connections, answers nothing
    lab.py resume zooN...       let a paused server go on (SIGCONT)
    lab.py partition zoo1       cut zoo1 off from the other machines
    lab.py partition zoo1 zoo3  cut only the link between zoo1 and zoo3
    lab.py heal                 remove every cut
    lab.py down                 remove everything the lab made

How a machine is built (Mininet's way): a network namespace whose one
interface, eth0, holds its address/24 and is one end of a veth pair; the
other end is a port of a bridge in a namespace of the lab's own, the switch.
No namespace of the lab has a default route or a link to this machine's own
namespace (`up` checks, and refuses to go on otherwise), so a command aimed at
10.0.10.x must run inside a machine, through `lab.py ssh`.

A machine's files are an overlay: below, a Debian root made once with
debootstrap and kept in /var/cache/zkdemo-lab ($ZKDEMO_LAB_CACHE), with Debian's
ZooKeeper and the scripts' venv already installed, as a Vagrant box comes with
its packages (the machines have no way out to fetch them); above, a layer of
its own, its disk, kept across halt and up. The repository is bind-mounted at
/vagrant. Its processes run chrooted there, in its namespace, with its host
name, in a memory cgroup limited as the Vagrantfile limits a VM.

Needs root, iproute2, util-linux, debootstrap (for the first up), nftables
(for partitions) and the cgroup memory controller (v1 or v2). $ZKDEMO_LAB
names the lab (default zkdemo); the tests use one of their own.
"""

import argparse
import contextlib
import fcntl
import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

from zkensemble import (REPO, SERVING, Parser, ToolError, UsageError, cleaning_up,
                        own_group, parse_srvr, read_config, recorded, run_tool,
                        server_addresses, wait_for)

LAB = os.environ.get("ZKDEMO_LAB") or "zkdemo"
CACHE = os.environ.get("ZKDEMO_LAB_CACHE") or "/var/cache/zkdemo-lab"
STATE = os.path.join("/var/lib/zkdemo-lab", LAB)
SWITCH = f"{LAB}-switch"
SUITE = "bookworm"
# What the box brings: the provisioner's packages and a few a VM user expects.
PACKAGES = ["zookeeperd", "python3-venv", "procps", "iproute2", "less"]
VENV = "/opt/zkdemo-venv"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
NFT_TABLE = "zkdemo_lab"


class LabError(ToolError):
    """Something the user must know or fix: one line, exit 1."""


def say(message):
    print(f"lab: {message}", flush=True)


def run(*command, check=True, timeout=120, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL, process_group=own_group(), **kwargs)
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise LabError(f"`{' '.join(command)}` failed: {detail[-1] if detail else result.returncode}")
    return result


def vm_memory():
    """The machines' memory in MB: $ZKDEMO_VM_MEMORY, else config/vm (the
    Vagrantfile reads the same two)."""
    text = os.environ.get("ZKDEMO_VM_MEMORY")
    if not text:
        with open(os.path.join(REPO, "config", "vm")) as f:
            text = dict(line.strip().split("=", 1) for line in f
                        if "=" in line and not line.startswith("#"))["memory_mb"]
    if not text.strip().isdigit() or not 192 <= int(text) <= 65536:
        raise LabError(f"ZKDEMO_VM_MEMORY={text!r}: give megabytes, 192 to 65536")
    return int(text)


# --- memory cgroups ------------------------------------------------------------

class Cgroup:
    """One memory cgroup: v1 (/sys/fs/cgroup/memory) or v2 (unified)."""

    def __init__(self, *names):
        if os.path.isdir("/sys/fs/cgroup/memory"):
            self.v2, base = False, "/sys/fs/cgroup/memory"
        elif os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            self.v2, base = True, "/sys/fs/cgroup"
        else:
            raise LabError("no cgroup memory controller at /sys/fs/cgroup: the lab needs one")
        self.path = os.path.join(base, *names)

    def create(self, limit_mb=None):
        if self.v2:
            parent = os.path.dirname(self.path)
            with open(os.path.join(parent, "cgroup.subtree_control"), "w") as f:
                f.write("+memory")
        os.makedirs(self.path, exist_ok=True)
        if self.v2 and limit_mb is None:
            with open(os.path.join(self.path, "cgroup.subtree_control"), "w") as f:
                f.write("+memory")
        if limit_mb:
            name = "memory.max" if self.v2 else "memory.limit_in_bytes"
            with open(os.path.join(self.path, name), "w") as f:
                f.write(str(limit_mb * 1024 * 1024))

    def join(self):
        """Move the calling process in (a preexec_fn: children follow)."""
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    def pids(self):
        try:
            with open(os.path.join(self.path, "cgroup.procs")) as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []

    def read(self, v1, v2):
        try:
            with open(os.path.join(self.path, v2 if self.v2 else v1)) as f:
                text = f.read().strip()
        except OSError:
            return None
        return None if text == "max" else int(text)

    def memory(self):
        """(used, limit, peak) in bytes."""
        return (self.read("memory.usage_in_bytes", "memory.current"),
                self.read("memory.limit_in_bytes", "memory.max"),
                self.read("memory.max_usage_in_bytes", "memory.peak"))

    def kill_all(self):
        """SIGTERM every process in it, then SIGKILL what is left."""
        for sig, seconds in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            if wait_for(lambda: not self.pids(), seconds):
                return
        raise LabError(f"processes left in {self.path}: {self.pids()}")

    def remove(self):
        if os.path.isdir(self.path):
            for child in sorted(os.listdir(self.path)):
                if os.path.isdir(os.path.join(self.path, child)):
                    os.rmdir(os.path.join(self.path, child))
            os.rmdir(self.path)


# --- the cached root --------------------------------------------------------------

def host_mirror():
    """The Debian mirror this machine's apt sources name."""
    for path in glob.glob("/etc/apt/sources.list.d/*.sources") + ["/etc/apt/sources.list"]:
        try:
            text = open(path).read()
        except OSError:
            continue
        for match in re.finditer(r"^URIs:\s*(\S+)|^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+\S+\s",
                                 text, re.M):
            uri = match.group(1) or match.group(2)
            if "security" not in uri:
                return uri
    return "http://deb.debian.org/debian"


@contextlib.contextmanager
def building(what):
    """One build of a cached `what` at a time: a second lab, or the VMs,
    started meanwhile waits for the first to finish, then uses what it made."""
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, f".{what}.lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"another run is making the {what} in {CACHE}: waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def base_root():
    """The cached root for this requirements.txt and package list: made once,
    with debootstrap, apt and pip, in this machine's own namespace (which
    reaches the package registries); never started, so nothing in it runs."""
    with building("root"):
        return make_base_root()


def make_base_root():
    with open(os.path.join(REPO, "requirements.txt"), "rb") as f:
        key = hashlib.sha256(f.read() + " ".join(PACKAGES).encode()).hexdigest()[:12]
    base = os.path.join(CACHE, f"{SUITE}-{key}")
    done = os.path.join(base, ".zkdemo-complete")
    if os.path.exists(done):
        return base
    if not shutil.which("debootstrap"):
        raise LabError("debootstrap is not installed (apt-get install debootstrap; "
                       "`make lab` does it): the lab needs it once, to make its root")
    if os.path.exists(base):
        say(f"{base} is unfinished (an interrupted run?): making it again")
        unmount_below(base)
        run("rm", "-rf", "--one-file-system", base)
    os.makedirs(CACHE, exist_ok=True)
    started = time.monotonic()
    say(f"debootstrap {SUITE} into {base} (once; a minute or two)")
    run("debootstrap", "--variant=minbase", SUITE, base, host_mirror(), timeout=1200)
    with installing(base) as chroot:
        say(f"installing {' '.join(PACKAGES)} in the root")
        run(*chroot, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES,
            timeout=1200)
        run(*chroot, "apt-get", "clean")
        say(f"making {VENV} from requirements.txt in the root")
        shutil.copy(os.path.join(REPO, "requirements.txt"), os.path.join(base, "tmp/requirements.txt"))
        run(*chroot, "python3", "-m", "venv", VENV)
        run(*chroot, f"{VENV}/bin/pip", "install", "-q", "--disable-pip-version-check",
            "-r", "/tmp/requirements.txt", timeout=600)
        os.replace(os.path.join(base, "tmp/requirements.txt"),
                   os.path.join(base, VENV.lstrip("/"), "requirements.txt"))
    open(done, "w").close()
    say(f"root ready in {time.monotonic() - started:.0f} s")
    return base


# --- mounts ------------------------------------------------------------------------

def mounted_below(path):
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    return [p for p in points if p == path or p.startswith(path.rstrip("/") + "/")]


def unmount(points):
    for point in sorted(points, key=len, reverse=True):
        if run("umount", point, check=False).returncode != 0:
            run("umount", "--lazy", point, check=False)


def unmount_below(path):
    unmount(mounted_below(path))


def mount_system(root):
    """/proc, /dev and /dev/pts in a root; returns the mount points."""
    points = []
    for source, target, options in (("proc", "proc", ["-t", "proc"]),
                                    ("/dev", "dev", ["--bind"]),
                                    ("devpts", "dev/pts", ["-t", "devpts", "-o", "newinstance"])):
        point = os.path.join(root, target)
        os.makedirs(point, exist_ok=True)
        run("mount", *options, source, point)
        points.append(point)
    return points


@contextlib.contextmanager
def installing(root):
    """A root made ready for apt and pip: /proc and /dev mounted, this
    machine's DNS and CA bundle, and no service started by what is installed.
    Gives the command that runs something in it."""
    mounts = mount_system(root)
    policy = os.path.join(root, "usr/sbin/policy-rc.d")
    try:
        shutil.copy("/etc/resolv.conf", os.path.join(root, "etc/resolv.conf"))
        with open(policy, "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(policy, 0o755)
        chroot = ["chroot", root, "env", "-i", f"PATH={PATH}", "HOME=/root", "LANG=C.UTF-8",
                  "DEBIAN_FRONTEND=noninteractive"]
        if os.path.exists(HOST_CA):
            shutil.copy(HOST_CA, os.path.join(root, "etc/zkdemo-host-ca.crt"))
            chroot.append("PIP_CERT=/etc/zkdemo-host-ca.crt")
        yield chroot
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(policy)
        unmount(mounts)


# --- the machines --------------------------------------------------------------------

class Machine:
    def __init__(self, name, myid, address):
        self.name, self.myid, self.address = name, myid, address
        self.ns = f"{LAB}-{name}"
        self.dir = os.path.join(STATE, name)
        self.root = os.path.join(self.dir, "root")
        self.upper = os.path.join(self.dir, "disk")
        self.cgroup = Cgroup(LAB, name)

    def holder(self):
        """The pid of the process that holds the machine's host name (its
        `init`), when the machine is up."""
        try:
            with open(os.path.join(self.dir, "holder.pid")) as f:
                pid = int(f.read())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError):
            return None
        return pid if cmdline.split(b"\0")[0] == self.holder_name().encode() else None

    def holder_name(self):
        return f"zkdemo-lab-holder {LAB} {self.name}"

    def is_up(self):
        return self.holder() is not None

    def command(self, shell_command=None, env=()):
        """argv that runs shell_command as a login shell on the machine, in
        /vagrant; an interactive login shell when there is none."""
        holder = self.holder()
        if holder is None:
            raise LabError(f"{self.name} is not up (lab.py up {self.name})")
        if shell_command is None:
            shell = ["bash", "-l", "-c", "cd /vagrant && exec bash -l"]
        else:
            shell = ["bash", "-l", "-c", f"cd /vagrant && {shell_command}"]
        environment = ["env", "-i", f"PATH={PATH}", "HOME=/root", "LANG=C.UTF-8",
                       f"TERM={os.environ.get('TERM', 'dumb')}", *env]
        return ["nsenter", f"--target={holder}", "--net", "--uts", "--",
                "chroot", self.root, *environment, *shell]

    def run(self, shell_command, env=(), timeout=300):
        return subprocess.run(self.command(shell_command, env), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL,
                              preexec_fn=self.cgroup.join,
                              process_group=own_group())

    def srvr(self):
        """The machine's ZooKeeper's answer to srvr, asked inside the machine."""
        holder = self.holder()
        if holder is None:
            return None
        result = subprocess.run(
            ["nsenter", f"--target={holder}", "--net", "--", sys.executable,
             os.path.join(REPO, "provision", "zkensemble.py"), "srvr", "127.0.0.1", "2181"],
            capture_output=True, text=True, timeout=10)
        return parse_srvr(result.stdout)

    def mode(self):
        if not self.is_up():
            return "halted"
        info = self.srvr()
        return info["Mode"] if info else "down"

    # -- making and unmaking --

    def boot(self, base, memory_mb):
        """Network, files, cgroup and holder; True if it was not up."""
        if self.is_up():
            return False
        self.halt(quiet=True)   # whatever a killed run left of it
        run("ip", "netns", "add", self.ns)
        run("ip", "-n", SWITCH, "link", "add", self.name, "type", "veth",
            "peer", "name", "eth0", "netns", self.ns)
        run("ip", "-n", SWITCH, "link", "set", self.name, "master", "br0", "up")
        run("ip", "-n", self.ns, "addr", "add", f"{self.address}/24", "dev", "eth0")
        run("ip", "-n", self.ns, "link", "set", "eth0", "up")
        run("ip", "-n", self.ns, "link", "set", "lo", "up")
        for path in (self.upper, os.path.join(self.dir, "work"), self.root):
            os.makedirs(path, exist_ok=True)
        run("mount", "-t", "overlay", "overlay", "-o",
            f"lowerdir={base},upperdir={self.upper},workdir={os.path.join(self.dir, 'work')}",
            self.root)
        mount_system(self.root)
        vagrant = os.path.join(self.root, "vagrant")
        os.makedirs(vagrant, exist_ok=True)
        run("mount", "--bind", REPO, vagrant)
        with open(os.path.join(self.root, "etc/hostname"), "w") as f:
            f.write(self.name + "\n")
        self.cgroup.create(memory_mb)
        holder = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "unshare", "--uts", "--", "bash", "-c",
             f'hostname {self.name} && exec -a "{self.holder_name()}" sleep infinity'],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=self.cgroup.join, start_new_session=True)
        holder_pid = wait_holder(holder.pid, self.holder_name())
        with open(os.path.join(self.dir, "holder.pid"), "w") as f:
            f.write(str(holder_pid))
        return True

    def halt(self, quiet=False):
        """Stop everything on the machine and take it off the network; its
        disk stays."""
        was_up = self.is_up()
        if was_up:
            self.run("/etc/init.d/zookeeper stop >/dev/null 2>&1 || true", timeout=60)
        if os.path.isdir(self.cgroup.path):
            self.cgroup.kill_all()
        unmount_below(self.root)
        # Its port on the switch first: deleting one end of a veth pair deletes
        # both at once, where a deleted namespace lets the kernel take its time.
        if os.path.exists(f"/run/netns/{SWITCH}"):
            run("ip", "-n", SWITCH, "link", "delete", self.name, check=False)
        if os.path.exists(f"/run/netns/{self.ns}"):
            run("ip", "netns", "delete", self.ns)
        self.cgroup.remove()
        try:
            os.remove(os.path.join(self.dir, "holder.pid"))
        except FileNotFoundError:
            pass
        if was_up and not quiet:
            say(f"{self.name} halted")
        return was_up


def wait_holder(pid, name):
    """`ip netns exec` forks nothing, `unshare` neither: the holder keeps the
    pid Popen gave; wait until it is the sleep (its host name is set)."""
    def ready():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return f.read().split(b"\0")[0] == name.encode()
        except OSError:
            raise LabError("the machine's holder process died at start")
    if not wait_for(ready, 10, 0.02):
        raise LabError("the machine's holder process did not start within 10 s")
    return pid


def machines():
    settings, nodes = read_config()
    addresses = server_addresses(settings)
    ids = sorted(myid for _, myid in nodes)
    if ids != sorted(addresses):
        raise LabError(f"config/nodes has myids {', '.join(map(str, ids))} but config/zoo.cfg "
                       f"has server.N lines for {', '.join(map(str, sorted(addresses)))}: "
                       "they must match")
    return [Machine(name, myid, addresses[myid]) for name, myid in nodes]


def pick(names):
    every = {m.name: m for m in machines()}
    unknown = [n for n in names if n not in every]
    if unknown:
        raise UsageError(f"unknown machine {unknown[0]!r} (the machines are "
                         f"{', '.join(every)})")
    return [every[n] for n in names]


# --- the network checks ---------------------------------------------------------------

def lab_namespaces():
    """The lab's namespaces that exist: its switch's and its machines', by
    their names only (another lab's, or vm.py's zkdtest-vm, may begin alike)."""
    ours = {SWITCH} | {f"{LAB}-{machine.name}" for machine in machines()}
    listed = run("ip", "netns", "list").stdout.split("\n")
    return [line.split()[0] for line in listed if line and line.split()[0] in ours]


def check_isolated():
    """No namespace of the lab has a default route, or a link anywhere but to
    another namespace of the lab. Raises LabError otherwise."""
    ours = set(lab_namespaces())
    for ns in ours:
        for family in ("-4", "-6"):
            if run("ip", "-n", ns, family, "route", "show", "default").stdout.strip():
                raise LabError(f"namespace {ns} has a default route: refusing to go on")
        ids = {}
        for entry in json.loads(run("ip", "-n", ns, "-j", "netns", "list-id").stdout or "[]"):
            ids[entry["nsid"]] = entry.get("name")
        for link in json.loads(run("ip", "-n", ns, "-j", "link", "show").stdout):
            if link["ifname"] in ("lo", "br0"):
                continue
            peer = link.get("link_netnsid")
            if link.get("link_type") != "ether" or peer is None or ids.get(peer) not in ours:
                raise LabError(f"namespace {ns} has a link {link['ifname']} that does not "
                               "lead to another machine of the lab: refusing to go on")


# --- the commands ------------------------------------------------------------------------

def cmd_up(args):
    memory = vm_memory()
    targets = pick(args.machines) if args.machines else machines()
    up = [m for m in targets if m.is_up()]
    if len(up) == len(targets):
        say(f"already up: {' '.join(m.name for m in up)} (lab.py status shows them)")
        return 0
    base = base_root()
    if not os.path.exists(f"/run/netns/{SWITCH}"):
        run("ip", "netns", "add", SWITCH)
    if run("ip", "-n", SWITCH, "link", "show", "br0", check=False).returncode != 0:
        run("ip", "-n", SWITCH, "link", "add", "br0", "type", "bridge")
    run("ip", "-n", SWITCH, "link", "set", "br0", "up")
    try:
        booted = [m for m in targets if m.boot(base, memory)]
        check_isolated()
        addresses = ",".join(m.address for m in machines())
        threads, failures = [], []
        for m in booted:
            # Written by provision/zookeeper.sh once the configuration is in
            # place: a machine halted half-way through is provisioned again.
            provisioned = os.path.exists(os.path.join(m.upper, "var/lib/zkdemo/configured"))
            threads.append(threading.Thread(target=start_machine,
                                            args=(m, addresses, memory, provisioned, failures)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    except KeyboardInterrupt:
        # Ctrl-C, SIGTERM or SIGHUP: a machine half made would look up to
        # the next `up` and never be provisioned. Halt what this `up` began.
        with cleaning_up():
            began = [m for m in targets if m not in up]
            say(f"interrupted: halting {' '.join(m.name for m in began)} again "
                "(lab.py up starts them, lab.py down removes the lab)")
            for m in began:
                try:
                    m.halt(quiet=True)
                except (LabError, OSError, subprocess.SubprocessError) as e:
                    say(f"{m.name}: could not halt it ({e}); lab.py down removes it")
            if not any(m.is_up() for m in machines()):
                run("ip", "netns", "delete", SWITCH, check=False)
        raise
    if failures:
        raise LabError("; ".join(failures))
    running = [m for m in machines() if m.is_up()]
    if len(running) > len(machines()) // 2:
        # A majority is up: wait until each of them serves, as a VM's
        # provisioner does before `vagrant up` returns.
        if not wait_for(lambda: all(m.mode() in SERVING for m in running), 60, 0.3):
            raise LabError("no quorum within 60 s: " + status_line())
        say(status_line())
    else:
        wait_for(lambda: all(m.mode() != "down" for m in booted), 60, 0.3)
        say(status_line())
        say("no quorum yet: a majority of the machines must be up (lab.py up starts them)")
    return 0


def start_machine(machine, addresses, memory, provisioned, failures):
    """Run the Vagrantfile's provisioner on a new machine, or start ZooKeeper
    on one that was halted, as booting a provisioned VM does."""
    try:
        provision(machine, addresses, memory, provisioned, failures)
    except (LabError, subprocess.SubprocessError, OSError) as e:
        failures.append(f"{machine.name}: {e}")


def provision(machine, addresses, memory, provisioned, failures):
    if provisioned:
        result = machine.run("/etc/init.d/zookeeper start")
        what = "starting ZooKeeper"
    else:
        say(f"{machine.name}: provisioning (provision/zookeeper.sh {machine.myid} {addresses})")
        result = machine.run(f"bash /vagrant/provision/zookeeper.sh {machine.myid} {addresses}",
                             env=["ZKDEMO_REPO=/vagrant", f"ZK_HEAP_MB={memory // 2}"])
        what = "provisioning"
        for line in result.stdout.splitlines():
            print(f"    {line}", flush=True)
    if result.returncode != 0:
        failures.append(f"{machine.name}: {what} failed: "
                        f"{(result.stderr or result.stdout).strip().splitlines()[-1:]}")


def status_line():
    return ", ".join(f"{m.name} {m.mode()}" for m in machines())


def cmd_status(args):
    every = machines()
    if not any(m.is_up() for m in every):
        say("no machine is up (lab.py up)")
        return 1
    for m in every:
        used, limit, peak = m.cgroup.memory() if m.is_up() else (None, None, None)
        memory = (f"memory {used / 2**20:.0f} of {limit / 2**20:.0f} MB (peak {peak / 2**20:.0f})"
                  if used is not None and limit else "")
        print(f"{m.name}  {m.address:<15} {m.mode():<12} {memory}".rstrip())
    return 0


def cmd_ssh(args):
    """One word after -- is a shell command line, run as `vagrant ssh -c`
    runs its one argument; several words are one command, each word kept as
    given (quoted for the machine's shell), as `ssh` would not keep them."""
    machine, = pick([args.machine])
    if not args.command:
        command = None
    elif len(args.command) == 1:
        command = args.command[0]
    else:
        command = shlex.join(args.command)
    argv = machine.command(command)
    machine.cgroup.join()   # this process, and so the shell, counts against its memory
    os.execvp(argv[0], argv)


def cmd_halt(args):
    for machine in pick(args.machines):
        if not machine.halt():
            say(f"{machine.name} was not up")
    return 0


ZK_PID = "$(cat /var/run/zookeeper/zookeeper.pid 2>/dev/null || echo none)"
SERVER_COMMANDS = {  # what each verb runs on the machine, and what it then says
    "kill": (f"kill -KILL {ZK_PID}", "killed (SIGKILL)"),
    "start": ("/etc/init.d/zookeeper start >/dev/null", "started"),
    "pause": (f"kill -STOP {ZK_PID}",
              "paused (SIGSTOP): it holds its connections but answers nothing"),
    "resume": (f"kill -CONT {ZK_PID}", "resumed (SIGCONT)"),
}


def cmd_server(args):
    """kill, start, pause or resume the ZooKeeper server on machines, as
    local-cluster.py does to a loopback server; several at once, so that
    (say) two servers restarted together elect each other at once."""
    chosen = pick(args.machines)
    for machine in chosen:
        if not machine.is_up():
            raise LabError(f"{machine.name} is not up (lab.py up {machine.name})")
    command, done = SERVER_COMMANDS[args.verb]
    for machine in chosen:
        result = machine.run(command, timeout=60)
        if result.returncode != 0:
            raise LabError(f"{machine.name}: {args.verb} failed: "
                           f"{(result.stderr or result.stdout).strip() or 'is ZooKeeper running?'}")
    for machine in chosen:
        if args.verb == "kill":
            wait_for(lambda: machine.mode() == "down", 5, 0.1)
        elif args.verb == "start":
            wait_for(lambda: machine.mode() != "down", 30, 0.2)
        say(f"{machine.name}: {done}, {machine.mode()}")
    return 0


def cmd_partition(args):
    cut = pick(args.machines)
    every = [m for m in machines() if m.is_up()]
    if not every:
        raise LabError("no machine is up: nothing to partition (lab.py up)")
    if not shutil.which("nft"):
        raise LabError("nft is not installed (apt-get install nftables; `make lab` does it)")
    if len(cut) == 1:
        pairs = [(cut[0], m) for m in machines() if m.name != cut[0].name]
    elif len(cut) == 2 and cut[0].name != cut[1].name:
        pairs = [(cut[0], cut[1])]
    else:
        raise UsageError("partition takes one machine (cut it off) or two (cut their link)")
    for a, b in pairs:
        for here, there in ((a, b), (b, a)):
            if here.is_up():
                block(here, there)
    say("cut: " + ", ".join(f"{a.name} <-> {b.name}" for a, b in pairs))
    return 0


def block(machine, other):
    """Drop every packet between machine and other, in machine's namespace."""
    rules = (f"table inet {NFT_TABLE} {{\n"
             f"  chain input {{ type filter hook input priority 0; }}\n"
             f"  chain output {{ type filter hook output priority 0; }}\n}}\n"
             f"add rule inet {NFT_TABLE} input ip saddr {other.address} drop\n"
             f"add rule inet {NFT_TABLE} output ip daddr {other.address} drop\n")
    subprocess.run(["ip", "netns", "exec", machine.ns, "nft", "-f", "-"], input=rules,
                   text=True, check=True, capture_output=True)


def cmd_heal(args):
    up = [m for m in machines() if m.is_up()]
    if not up:
        raise LabError("no machine is up: nothing to heal (lab.py up)")
    for m in up:
        run("ip", "netns", "exec", m.ns, "nft", "delete", "table", "inet", NFT_TABLE,
            check=False)
    say("healed: every machine reaches every other")
    return 0


def cmd_down(args):
    with cleaning_up():   # a second Ctrl-C must not leave it half removed
        return take_down()


def take_down():
    started = time.monotonic()
    found = lab_namespaces() or os.path.isdir(STATE) or os.path.isdir(Cgroup(LAB).path)
    if not found:
        say(f"the lab {LAB} is not up: nothing to take down")
        return 0
    # What there is, by name, to say what was removed (after a killed run, the
    # next one's first `down` tells what that run left).
    namespaces = lab_namespaces()
    mounts = mounted_below(STATE)
    running = [m.name for m in machines() if m.is_up()]
    halting = [threading.Thread(target=m.halt, kwargs={"quiet": True}) for m in machines()]
    for thread in halting:
        thread.start()
    for thread in halting:
        thread.join()
    for ns in lab_namespaces():   # the switch, and anything of ours by name
        run("ip", "netns", "delete", ns)
    unmount_below(STATE)
    if mounted_below(STATE):
        raise LabError(f"still mounted under {STATE}: {mounted_below(STATE)}")
    run("rm", "-rf", "--one-file-system", STATE)
    Cgroup(LAB).remove()
    say(f"down: {LAB} removed in {time.monotonic() - started:.1f} s: machines "
        f"{' '.join(running) or 'none up'}; {len(namespaces)} namespaces, {len(mounts)} mounts, "
        "its cgroups and state folder")
    return 0


# --- main --------------------------------------------------------------------------------

def parse_args(argv):
    parser = Parser(prog="lab.py", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND",
                                     parser_class=Parser)
    up = commands.add_parser("up", help="make the machines, or start the ones named")
    up.add_argument("machines", nargs="*", metavar="zooN")
    commands.add_parser("status", help="machines, addresses, ZooKeeper mode, memory")
    ssh = commands.add_parser("ssh", help="a login shell on a machine, or run a command there")
    ssh.add_argument("machine", metavar="zooN")
    ssh.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD")
    halt = commands.add_parser("halt", help="stop machines (their disks stay)")
    halt.add_argument("machines", nargs="+", metavar="zooN")
    partition = commands.add_parser("partition", help="cut a machine off, or one link")
    partition.add_argument("machines", nargs="+", metavar="zooN")
    commands.add_parser("heal", help="remove every cut")
    for verb, text in (("kill", "kill -9 the ZooKeeper server on machines"),
                       ("start", "start killed servers again"),
                       ("pause", "SIGSTOP the server on machines"),
                       ("resume", "SIGCONT paused servers")):
        commands.add_parser(verb, help=text).add_argument("machines", nargs="+", metavar="zooN")
    commands.add_parser("down", help="remove everything the lab made")
    args = parser.parse_args(argv)
    if args.verb == "ssh" and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    return args


def main(argv=None):
    args = parse_args(argv)
    if os.geteuid() != 0:
        raise LabError("the lab needs root (namespaces, mounts, cgroups): run it with sudo")
    for tool in ("ip", "nsenter", "unshare", "chroot", "mount"):
        if not shutil.which(tool):
            raise LabError(f"{tool} is not installed: the lab needs it")
    handler = {"up": cmd_up, "status": cmd_status, "ssh": cmd_ssh, "halt": cmd_halt,
               "partition": cmd_partition, "heal": cmd_heal, "down": cmd_down,
               **dict.fromkeys(SERVER_COMMANDS, cmd_server)}
    named = getattr(args, "machines", None) or [getattr(args, "machine", "")]
    if args.verb in ("status", "ssh", "down") or (args.verb == "up" and not args.machines):
        return handler[args.verb](args)
    # A fault or its repair: provision/timeline.py draws it from events.log.
    with recorded(STATE, " ".join([args.verb, *named]).strip()):
        return handler[args.verb](args)


if __name__ == "__main__":
    sys.exit(run_tool("lab.py", main))
