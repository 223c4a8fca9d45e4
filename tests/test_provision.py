"""The VM side: the Vagrantfile, the shell scripts, and a real provisioner run.

A VM cannot be booted here, so the provisioner for zoo1 runs in a Debian
bookworm root made by debootstrap, entered with chroot. It is given loopback
addresses: a server started here with the VMs' 10.0.10.x addresses would try
to reach them.
"""

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from conftest import REPO, require, wait_until

sys.path.insert(0, os.path.join(REPO, "provision"))
from lab import HOST_CA, host_mirror  # noqa: E402  (the lab makes its root the same way)

CHROOT_DIR = os.path.join(REPO, ".zkdemo", "chroot")
CHROOT_IP = "127.0.20.1"


def shell_scripts():
    return sorted(glob.glob(os.path.join(REPO, "provision", "*.sh"))) + \
        [os.path.join(REPO, ".ci", "run")]


def test_shell_scripts_are_shellcheck_clean():
    require("shellcheck", shutil.which("shellcheck"))
    result = subprocess.run(["shellcheck", *shell_scripts()], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def vagrant_validate(*args, env=None):
    return subprocess.run(["vagrant", "validate", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, **(env or {})))


@pytest.mark.parametrize("how", [
    # The libvirt provider's block, with vagrant-libvirt installed (its
    # provider is the only one here, so plain validate uses it) ...
    {"args": [], "env": {"VAGRANT_DEFAULT_PROVIDER": "libvirt"}},
    # ... and everything else, provider blocks left out.
    {"args": ["--ignore-provider"], "env": {}},
])
def test_vagrantfile_validates(how):
    require("vagrant", shutil.which("vagrant"))
    result = vagrant_validate(*how["args"], env=how["env"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Vagrantfile validated successfully." in result.stdout


@pytest.mark.parametrize("memory", ["abc", "64", "99999999", ""])
def test_a_bad_vm_memory_is_one_line_from_vagrant_validate(memory):
    require("vagrant", shutil.which("vagrant"))
    result = vagrant_validate(env={"ZKDEMO_VM_MEMORY": memory} if memory else {})
    if not memory:   # unset: config/vm's figure, which is fine
        assert result.returncode == 0, result.stdout + result.stderr
        return
    assert result.returncode == 1
    assert result.stderr == (f'zookeeper-demo: ZKDEMO_VM_MEMORY="{memory}": give each VM\'s '
                             "memory in MB, 192 to 65536 (ZooKeeper takes about 50 MB; see "
                             "the README's lab section)\n")


def test_config_whose_nodes_and_zoo_cfg_disagree_is_one_line(tmp_path):
    """Both readers of config/, the Vagrantfile and the lab, say so in one line."""
    require("vagrant", shutil.which("vagrant"))
    copy = tmp_path / "repo"
    shutil.copytree(os.path.join(REPO, "config"), copy / "config")
    shutil.copytree(os.path.join(REPO, "provision"), copy / "provision")
    shutil.copy(os.path.join(REPO, "Vagrantfile"), copy)
    shutil.copy(os.path.join(REPO, "requirements.txt"), copy)
    nodes = (copy / "config" / "nodes").read_text().replace("zoo3    3", "zoo3    4")
    (copy / "config" / "nodes").write_text(nodes)
    result = subprocess.run(["vagrant", "validate"], cwd=copy, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert result.stderr == ("zookeeper-demo: config/nodes has myids 1, 2, 4 but config/zoo.cfg "
                             "has server.N lines for 1, 2, 3: they must match\n")
    lab = subprocess.run(["python3", str(copy / "provision" / "lab.py"), "status"],
                         capture_output=True, text=True, env=dict(os.environ, ZKDEMO_LAB="zkdcfg"))
    assert lab.returncode == 1
    assert lab.stderr == ("lab.py: config/nodes has myids 1, 2, 4 but config/zoo.cfg has "
                          "server.N lines for 1, 2, 3: they must match\n")


@pytest.mark.parametrize("conf, allowed", [
    ("* 10.0.0.0/8 192.168.0.0/16\n", True),
    ("* 10.0.10.0/24\n", True),
    ("* 192.168.56.0/21\n", False),
    (None, False),            # no file: VirtualBox allows 192.168.56.0/21 only
])
def test_the_virtualbox_range_check_reads_networks_conf(tmp_path, conf, allowed):
    """The check `vagrant up` makes before VirtualBox would stop halfway."""
    require("ruby", shutil.which("ruby"))
    path = tmp_path / "networks.conf"
    if conf is not None:
        path.write_text(conf)
    probe = ('module Vagrant; def self.configure(*); end; end; load "Vagrantfile"; '
             f'print vbox_allows?(%w[10.0.10.101 10.0.10.102 10.0.10.103], "{path}")')
    result = subprocess.run(["ruby", "-e", probe], cwd=REPO, capture_output=True, text=True)
    assert result.stdout == str(allowed).lower(), result.stderr


def test_provisioner_usage_errors():
    script = os.path.join(REPO, "provision", "zookeeper.sh")
    for args, message in ([[], "usage: zookeeper.sh MYID ADDRESSES"],
                          [["4", "127.0.20.1,127.0.20.2"], "MYID must be 1 to 2, got '4'"],
                          [["x", "127.0.20.1"], "MYID must be 1 to 1, got 'x'"]):
        result = subprocess.run(["bash", script, *args], capture_output=True, text=True)
        assert result.returncode == 2
        assert message in result.stderr


class Chroot:
    """A Debian bookworm root for one provisioner run, with what a chroot needs."""

    def __init__(self):
        self.base = os.path.join(CHROOT_DIR, "base")
        self.root = os.path.join(CHROOT_DIR, "zoo1")
        self.archives = os.path.join(CHROOT_DIR, "apt-archives")
        self.mounts = []

    def build(self):
        # The bare root is made once and kept under .zkdemo/; each run provisions a copy.
        if not os.path.exists(os.path.join(self.base, ".complete")):
            shutil.rmtree(self.base, ignore_errors=True)
            subprocess.run(["debootstrap", "--variant=minbase", "bookworm", self.base,
                            host_mirror()], check=True, capture_output=True, timeout=900)
            open(os.path.join(self.base, ".complete"), "w").close()
        self.remove()
        subprocess.run(["cp", "-a", self.base, self.root], check=True)
        shutil.copy("/etc/resolv.conf", os.path.join(self.root, "etc/resolv.conf"))
        if os.path.exists(HOST_CA):
            # Downloads may pass through a proxy that only the host's CA bundle trusts.
            shutil.copy(HOST_CA, os.path.join(self.root, "etc/zkdemo-host-ca.crt"))
        policy = os.path.join(self.root, "usr/sbin/policy-rc.d")
        with open(policy, "w") as f:
            f.write("#!/bin/sh\n# Packages must not start services in this chroot.\nexit 101\n")
        os.chmod(policy, 0o755)
        os.makedirs(self.archives, exist_ok=True)
        for source, target, options in (("proc", "proc", ["-t", "proc"]),
                                         ("sysfs", "sys", ["-t", "sysfs"]),
                                         ("/dev", "dev", ["--bind"]),
                                         ("devpts", "dev/pts", ["-t", "devpts"]),
                                         (self.archives, "var/cache/apt/archives", ["--bind"]),
                                         (REPO, "vagrant", ["--bind", "-o", "ro"])):
            path = os.path.join(self.root, target)
            os.makedirs(path, exist_ok=True)
            subprocess.run(["mount", *options, source, path], check=True)
            self.mounts.append(path)

    def run(self, *command, timeout=900):
        env = ["env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME=/root", "LANG=C.UTF-8", "ZKDEMO_REPO=/vagrant"]
        if os.path.exists(os.path.join(self.root, "etc/zkdemo-host-ca.crt")):
            env.append("PIP_CERT=/etc/zkdemo-host-ca.crt")
        return subprocess.run(["chroot", self.root, *env, *command],
                              capture_output=True, text=True, timeout=timeout)

    def zookeeper_pid(self):
        """The chroot's ZooKeeper, if its recorded pid is still that JVM."""
        try:
            pid = int(open(os.path.join(self.root, "run/zookeeper/zookeeper.pid")).read())
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except (OSError, ValueError):
            return None
        return pid if b"QuorumPeerMain" in cmdline and b"conf_zkdemo" in cmdline else None

    def teardown(self):
        self.run("/etc/init.d/zookeeper", "stop", timeout=60)
        pid = self.zookeeper_pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: self.zookeeper_pid() is None, 10, what="the chroot's ZooKeeper to exit")
        for path in reversed(self.mounts):
            if subprocess.run(["umount", path]).returncode != 0:
                subprocess.run(["umount", "--lazy", path])
        self.mounts = []

    def remove(self):
        """Delete the work copy, never what is mounted into it (/dev, the repo)."""
        if not os.path.isdir(self.root):
            return
        for path in ("vagrant", "var/cache/apt/archives", "dev/pts", "dev", "sys", "proc"):
            subprocess.run(["umount", "--lazy", os.path.join(self.root, path)],
                           stderr=subprocess.DEVNULL)
        with open("/proc/self/mounts") as f:
            mounted = [line.split()[1] for line in f if line.split()[1].startswith(self.root + "/")]
        if mounted:
            raise RuntimeError(f"still mounted, not deleting {self.root}: {mounted}")
        subprocess.run(["rm", "-rf", "--one-file-system", self.root], check=True)


def srvr(ip):
    try:
        with socket.create_connection((ip, 2181), timeout=2) as s:
            s.sendall(b"srvr")
            return s.makefile(errors="replace").read()
    except OSError:
        return None


@pytest.fixture
def chroot():
    require("root (the chroot provisioner test)", os.geteuid() == 0)
    require("debootstrap", shutil.which("debootstrap"))
    root = Chroot()
    try:
        root.build()
        yield root
    finally:
        root.teardown()


def test_provisioner_installs_zookeeper_and_a_second_run_changes_nothing(chroot):
    first = chroot.run("bash", "/vagrant/provision/zookeeper.sh", "1", CHROOT_IP, CHROOT_IP)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "zoo1: installing zookeeperd python3-venv" in first.stdout
    assert "zoo1: ZooKeeper answers on port 2181: standalone" in first.stdout

    # What the VM gets: the config rendered from config/zoo.cfg, the myid, a venv with kazoo.
    # (Read inside the chroot: Debian's links there are absolute paths.)
    zoo_cfg = chroot.run("cat", "/etc/zookeeper/conf/zoo.cfg").stdout
    assert f"server.1={CHROOT_IP}:2888:3888" in zoo_cfg
    assert "4lw.commands.whitelist=srvr, mntr, ruok, stat, conf" in zoo_cfg
    assert chroot.run("cat", "/var/lib/zookeeper/myid").stdout == "1\n"
    kazoo = chroot.run("bash", "-lc", "python3 -c 'import kazoo.client; print(kazoo.__file__)'")
    assert kazoo.stdout.startswith("/opt/zkdemo-venv/"), kazoo.stdout + kazoo.stderr
    # ZooKeeper logs where Debian puts the log, and answers from outside the chroot.
    assert "Mode: standalone" in wait_until(lambda: srvr(CHROOT_IP), 30, what="srvr")
    log = os.path.join(chroot.root, "var/log/zookeeper/zookeeper.log")
    assert "binding to port" in open(log).read()
    # A `vagrant ssh` login runs the tutorial's scripts as typed.
    get = chroot.run("bash", "-lc", f"/vagrant/scripts/get.py --hosts {CHROOT_IP}")
    assert get.returncode == 0, get.stdout + get.stderr
    assert "/zkdemo does not exist yet" in get.stdout or "/zkdemo has no znodes" in get.stdout

    pid = chroot.zookeeper_pid()
    second = chroot.run("bash", "/vagrant/provision/zookeeper.sh", "1", CHROOT_IP, CHROOT_IP)
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.splitlines() == [
        "zoo1: configuration unchanged; ZooKeeper left running",
        "zoo1: ZooKeeper answers on port 2181: standalone",
    ]
    assert chroot.zookeeper_pid() == pid


def test_a_stop_signal_in_a_child_before_its_command_ends_it_without_a_traceback():
    """lab.py starts commands with a preexec_fn (the machine's cgroup), so a
    forked child runs Python before its command; a group's SIGTERM landing
    then ran the tool's handler there, and a traceback reached the terminal
    (seen once in test_chaos). Planted: the child signals itself right there."""
    child = (
        "import os, signal, subprocess, sys\n"
        f"sys.path.insert(0, {os.path.join(REPO, 'provision')!r})\n"
        "from zkensemble import stop_as_ctrl_c\n"
        "stop_as_ctrl_c()\n"
        "term = lambda: os.kill(os.getpid(), signal.SIGTERM)\n"
        "done = subprocess.run(['true'], preexec_fn=term)\n"
        "print('child ended', done.returncode)\n")
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                            timeout=30, stdin=subprocess.DEVNULL)
    assert "Traceback" not in result.stderr and result.returncode == 0, result.stderr
    assert result.stdout == f"child ended {128 + signal.SIGTERM}\n"


def test_two_runs_make_the_cached_root_one_at_a_time(tmp_path):
    """Two labs (or a lab and the VMs) started together on a new machine:
    the second waits, and says so, while the first makes the Debian root."""
    holder = ("import sys, lab\nwith lab.building('root'):\n"
              "    print('making', flush=True); sys.stdin.read()\nprint('done', flush=True)")
    env = dict(os.environ, ZKDEMO_LAB_CACHE=str(tmp_path),
               PYTHONPATH=os.path.join(REPO, "provision"))
    runs = []
    try:
        for _ in range(2):   # the second starts once the first is making it
            runs.append(subprocess.Popen([sys.executable, "-c", holder], env=env, text=True,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT))
            if len(runs) == 1:
                assert runs[0].stdout.readline() == "making\n"
        assert "another run is making the root" in runs[1].stdout.readline()
        runs[0].stdin.close()   # the first is done: the second makes (uses) it only now
        assert runs[0].stdout.readline() == "done\n"
        assert runs[1].stdout.readline() == "making\n"
        runs[1].stdin.close()
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
            run.wait()


def test_vm_down_finds_a_vm_whose_namespace_went(tmp_path):
    """A qemu of vm.py's whose namespace was deleted from under it runs on,
    outside any namespace of ours: `vm.py down` finds it by the state folder
    in its command line, stops it, and says so."""
    if os.geteuid() != 0:
        require("root (for vm.py)", False)
    name = "zkdstray"
    state = f"/var/lib/zkdemo-vm/{name}"
    os.makedirs(state, exist_ok=True)
    stray = subprocess.Popen(["bash", "-c", f"read -r _; : {state}/disk.img"],
                             stdin=subprocess.PIPE, start_new_session=True)
    try:
        result = subprocess.run([sys.executable, os.path.join(REPO, "provision", "vm.py"), "down"],
                                env=dict(os.environ, ZKDEMO_VM=name), capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "removed 1 processes outside it" in result.stdout, result.stdout
        assert stray.wait(timeout=30) == -signal.SIGKILL
        assert not os.path.exists(state)
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()
