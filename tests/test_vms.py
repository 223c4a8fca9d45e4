"""The three VMs for real: the unchanged Vagrantfile booted by Vagrant and
vagrant-libvirt (qemu under TCG where KVM does not work), offline, from the box
provision/vm.py builds, and the README's VM commands run in them as printed.

Everything runs in a network namespace of the tests' own ($ZKDEMO_VM=zkdtest-vm),
through `vm.py vagrant`: this machine's own namespace never gets, nor
connects to, an address of the VMs' networks (checked before and after). The
project is a copy of this working tree in a folder of the test's, so a
learner's .vagrant/ is never touched. Under CI=true a missing tool fails the
test, naming it.
"""

import contextlib
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, removed_leftovers, require, stop_all, stopped_at, tell, wait_until
from test_readme import unshown, sh_blocks
import vm as vm_tool   # provision/vm.py

NAME = f"{os.environ.get('ZKDEMO_TEST_LAB', 'zkdtest')}-vm"   # $ZKDEMO_TEST_LAB: as in test_lab.py
VM_PY = os.path.join(REPO, "provision", "vm.py")
ENV = dict(os.environ, ZKDEMO_VM=NAME)
HOSTS = "10.0.10.101,10.0.10.102,10.0.10.103"
TOOLS = ("vagrant", "libvirtd", "virsh", "qemu-system-x86_64", "qemu-img", "dnsmasq", "rsync",
         "debootstrap", "nsenter", "unshare")


# `vagrant up zoo1 zoo2 zoo3` under the emulator on 2 cores took at most
# UP_MAX_S in make bench's ten boots in a row (docs/performance.md). The box
# gives each VM 900 s to boot; a test gives the whole `up` six times the max.
UP_MAX_S = 203
UP_TIMEOUT = 6 * UP_MAX_S


def vm(*args, project=None, check=True, timeout=300):
    result = subprocess.run([sys.executable, VM_PY, *args], cwd=project or REPO, env=ENV,
                            capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    output = result.stdout + result.stderr
    if check and result.returncode != 0:
        raise AssertionError(f"vm.py {' '.join(args)} exited {result.returncode}:\n{output}")
    return result


def vagrant(project, *args, check=True, timeout=300):
    return vm("vagrant", *args, project=project, check=check, timeout=timeout)


def on(project, machine, command, check=True):
    return vagrant(project, "ssh", machine, "-c", command, check=check)


def host_view():
    """What this machine's own namespace has of the VMs' networks: nothing, ever."""
    shown = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout + \
        subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    return [line for line in shown.splitlines()
            if re.search(r"\b(10\.0\.10|192\.168\.12[12])\.", line)]


def leftovers():
    found = [ns for ns in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                         text=True).stdout.split() if ns == NAME]
    state = f"/var/lib/zkdemo-vm/{NAME}"
    found += [state] if os.path.exists(state) else []
    with open("/proc/self/mounts") as f:
        found += [line.split()[1] for line in f
                  if line.split()[1] == state or line.split()[1].startswith(state + "/")]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if (state + "/").encode() in f.read():
                    found.append(f"process {pid}")
        except OSError:
            pass
    return found


def modes(project, via="zoo1"):
    status = on(project, via, f"/vagrant/scripts/status.py --hosts {HOSTS}", check=False)
    return dict(re.findall(r"^\S+ \S+ (10\.0\.10\.\d+):2181 +(\S+(?: \S+)?)", status.stdout, re.M))


@pytest.fixture(scope="module")
def vms(tmp_path_factory):
    """The three VMs, up; destroyed, with nothing left, at the end."""
    gone = [tool for tool in TOOLS if not subprocess.run(
        ["sh", "-c", f"PATH=$PATH:/usr/sbin:/sbin command -v {tool}"],
        capture_output=True).returncode == 0]
    require(", ".join(gone) + " (for the VMs)", not gone)
    require("root (for the VMs)", os.geteuid() == 0)
    removed_leftovers("test_vms", vm("down"))   # whatever a killed run of ours left
    assert host_view() == []
    project = tmp_path_factory.mktemp("vagrant") / "zookeeper-demo"
    subprocess.run(["rsync", "-a", "--exclude", ".git", "--exclude", ".venv", "--exclude",
                    ".zkdemo", "--exclude", ".vagrant", "--exclude", "__pycache__",
                    f"{REPO}/", f"{project}/"], check=True)
    started = time.monotonic()
    box = vm("box", timeout=1200)
    box_took = time.monotonic() - started
    user_boxes = boxes_of_this_machine()
    with machine_libvirtd(tmp_path_factory.mktemp("libvirtd")) as theirs:
        interrupted_up(project)
        started = time.monotonic()
        up = vagrant(project, "up", "zoo1", "zoo2", "zoo3", check=False, timeout=UP_TIMEOUT)
        took = time.monotonic() - started
        tell(f"test_vms: box {box_took:.0f} s ({box.stdout.strip().splitlines()[-1]}), "
             f"vagrant up zoo1 zoo2 zoo3 {took:.0f} s")
        try:
            assert up.returncode == 0, up.stdout[-3000:] + up.stderr
            # vm.py says how long the boot is expected to take, so that a slow
            # one does not look hung.
            if vm_tool.driver() == "qemu":
                assert "vm: no KVM here: the VMs run under qemu's emulator" in up.stdout
            yield {"project": project, "up": up.stdout, "machine_libvirtd": theirs}
        finally:
            vm("down", project=project, check=False, timeout=600)
    # The box went to vm.py's own VAGRANT_HOME: a learner's boxes are as they were.
    assert boxes_of_this_machine() == user_boxes


@contextlib.contextmanager
def machine_libvirtd(tmp):
    """A libvirtd in this machine's own namespace, as a learner may already
    run one (here without libvirt's default network, whose 192.168.122.1 has
    no place on this machine); vm.py uses its own and leaves this one be."""
    if os.path.exists("/run/libvirt/libvirt-sock"):
        yield None   # this machine runs one already: not ours to start or stop
        return
    had_run_libvirt = os.path.exists("/run/libvirt")
    process = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         'mount --bind "$1" /etc/libvirt/qemu/networks && exec libvirtd', "sh", str(tmp)],
        start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: os.path.exists("/run/libvirt/libvirt-sock") or process.poll() is not None,
                   30, what="this machine's libvirtd to listen")
        assert process.poll() is None, f"libvirtd exited {process.returncode}"
        yield process
        assert process.poll() is None, "this machine's libvirtd did not survive vm.py"
    finally:
        stop_all([process], grace=30)
        if not had_run_libvirt:
            shutil.rmtree("/run/libvirt", ignore_errors=True)


def boxes_of_this_machine():
    home = os.environ.get("VAGRANT_HOME") or os.path.expanduser("~/.vagrant.d")
    return sorted(glob.glob(os.path.join(home, "boxes", "**"), recursive=True))


def interrupted_up(project):
    """Ctrl-C while `vagrant up` boots a VM, and SIGTERM to vm.py alone (a
    kill, a CI's limit), which vm.py passes on to vagrant as the Ctrl-C it
    knows: vagrant removes what it had half made, and `vm.py down` leaves
    nothing for the next run."""
    for how in ("Ctrl-C", "SIGTERM to vm.py"):
        def stop(process):
            if how == "Ctrl-C":   # what a terminal sends its foreground group
                os.killpg(process.pid, signal.SIGINT)
            else:
                process.send_signal(signal.SIGTERM)
        code, output = stopped_at([sys.executable, VM_PY, "vagrant", "up", "zoo1"],
                                  "==> zoo1: Waiting for domain to get an IP address", stop,
                                  cwd=project, env=ENV)
        assert code != 0, output
        # Vagrant cleaned up after itself: the half-made domain is gone.
        assert "Removing domain..." in output, f"{how}:\n{output[-2000:]}"
        vm("down", project=project, timeout=600)
        assert leftovers() == [] and host_view() == []


def test_the_vms_boot_offline_and_serve(vms):
    project = vms["project"]
    # Each provisioner's last line tells the truth: the VM that comes up
    # last finds its peers and says what it became, not "not serving yet".
    last = re.findall(r"zoo\d: ZooKeeper answers on port 2181: (.*)", vms["up"])
    assert len(last) == 3, vms["up"][-3000:]
    # The box was added with a version, so vagrant-libvirt has no warning about it.
    assert "No version detected" not in vms["up"]
    assert re.fullmatch("leader|follower", last[-1]), last
    assert sorted(modes(project).values()) == ["follower", "follower", "leader"]
    # No route out: the box brought everything the provisioner needed.
    routes = on(project, "zoo1", "ip route").stdout
    assert "10.0.10.0/24" in routes
    assert host_view() == []


def test_a_libvirtd_of_this_machine_is_left_alone(vms):
    """A libvirtd already ran here when vm.py started its own: the VMs are in
    vm.py's, none in this machine's, and that one still runs (the fixture
    checks it outlives `vm.py down`)."""
    said = vagrant(vms["project"], "status").stdout
    assert re.search(r"^zoo1 +running", said, re.M), said
    listed = subprocess.run(["virsh", "--connect", "qemu:///system", "list", "--all", "--name"],
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert not re.search(r"zoo\d", listed.stdout), listed.stdout
    if vms["machine_libvirtd"]:
        assert vms["machine_libvirtd"].poll() is None


def test_the_namespace_is_isolated(vms):
    for family in ("-4", "-6"):
        assert subprocess.run(["ip", "-n", NAME, family, "route", "show", "default"],
                              capture_output=True, text=True).stdout == ""
    assert host_view() == []


def vm_blocks(text):
    """(lines, expected) of each README block meant for the VMs (not the lab).
    A block whose commands run in terminals of their own, beside the others
    (the lock story's), is run in the lab by test_readme.py, as test_lab.py
    leaves it too: run one by one here, its store would never return."""
    return [(lines, expected) for lines, expected in sh_blocks(text)
            if any("vagrant" in line.partition("  #")[0] for line in lines)
            and not any("provision/lab.py" in line or "make lab" in line for line in lines)
            and not any(" terminal" in line.partition("  #")[2] for line in lines)]


def test_every_vm_command_in_the_readme_runs_on_the_vms(vms):
    project = vms["project"]
    # The README's VM commands, and docs/vms.md's (the offline VMs in a namespace).
    steps = vm_blocks(open(os.path.join(REPO, "README.md")).read()
                      + open(os.path.join(REPO, "docs", "vms.md")).read())
    ran = []
    for lines, expected in steps:
        output, session, cwd = "", None, ""
        for line in lines:
            command, _, comment = line.partition("  #")
            command = command.strip()
            refused = "refused" in comment
            if m := re.fullmatch(r"vagrant ssh (zoo\d)", command):
                session = m.group(1)
                continue
            if session and command.startswith("cd "):
                cwd = command + " && "
                continue
            if command == "bash provision/setup-host.sh --vm":
                result = subprocess.run(["bash", "provision/setup-host.sh", "--vm"], cwd=REPO,
                                        capture_output=True, text=True, timeout=900)
                assert result.returncode == 0, result.stdout + result.stderr
                continue
            command = command.replace("python3 provision/vm.py vagrant ", "vagrant ")
            if m := re.fullmatch(r"vagrant ssh (zoo\d) -c '(.*)'", command):
                args = ["ssh", m.group(1), "-c", m.group(2)]
            elif command.startswith("vagrant "):
                args = command.split()[1:]
            elif session:
                args = ["ssh", session, "-c", cwd + command]
            else:
                raise AssertionError(f"a VM command the test cannot place: {line}")
            ran.append(" ".join(args))
            result = vagrant(project, *args, check=False, timeout=900)
            said = result.stdout + result.stderr
            assert (result.returncode != 0) == refused, f"{args} exited {result.returncode}:\n{said}"
            if refused:
                assert "NoAuth" in said, said
            output += said
        if expected:
            assert not unshown(expected, output), (
                f"{lines}: {unshown(expected, output)}:\n{output}")
    for needed in ("up zoo1 zoo2 zoo3", f"scripts/get.py --hosts {HOSTS}",
                   "ssh zoo1 -c /vagrant/scripts/acl-lockdown.py --hosts 10.0.10.101",
                   "ssh zoo2 -c /vagrant/scripts/acl-lockdown.py --hosts 10.0.10.102",
                   "zkCli.sh ls /", "/var/log/zookeeper/zookeeper.log"):
        assert any(needed in command for command in ran), f"the README never runs {needed!r}"


def test_provision_again_changes_nothing(vms):
    said = vagrant(vms["project"], "provision", "zoo1").stdout
    assert "zoo1: configuration unchanged; ZooKeeper left running" in said, said


def test_rsync_brings_an_edit_to_the_vms(vms):
    project = vms["project"]
    (project / "config" / "edited-on-the-host").write_text("an edit\n")
    vagrant(project, "rsync", "zoo2")
    assert on(project, "zoo2", "cat /vagrant/config/edited-on-the-host").stdout.strip() == "an edit"


def test_halt_and_up_bring_a_vm_back_as_a_follower(vms):
    project = vms["project"]
    started = time.monotonic()
    vagrant(project, "halt", "zoo2")
    halted = time.monotonic() - started
    assert modes(project).get("10.0.10.102") == "down"
    started = time.monotonic()
    vagrant(project, "up", "zoo2", timeout=900)
    # ZooKeeper starts at boot; it serves once it has caught up with the leader.
    wait_until(lambda: sorted(modes(project).values()) == ["follower", "follower", "leader"],
               120, interval=1, what="zoo2 to serve again")
    print(f"\nVMs: vagrant halt zoo2 {halted:.0f} s, vagrant up zoo2 until it serves "
          f"{time.monotonic() - started:.0f} s", file=sys.stderr)


def test_destroy_leaves_nothing(vms):
    project = vms["project"]
    vagrant(project, "destroy", "-f")
    virsh = ["nsenter", f"--mount=/var/lib/zkdemo-vm/{NAME}/ns/mnt", f"--net=/run/netns/{NAME}",
             "virsh", "--connect", "qemu:///system"]
    assert subprocess.run(virsh + ["list", "--all", "--name"], capture_output=True,
                          text=True).stdout.strip() == ""
    assert subprocess.run(virsh + ["net-list", "--all", "--name"], capture_output=True,
                          text=True).stdout.strip() == ""
    vm("down", project=project)
    assert leftovers() == []
    assert host_view() == []


def test_down_finds_what_a_crashed_run_left(vms):
    """libvirtd and everything in the namespace killed at once, as when the
    machine running them crashes: `vm.py down` finds the rest by name."""
    project = vms["project"]
    vagrant(project, "status")   # libvirtd running again, with no VM
    pids = subprocess.run(["ip", "netns", "pids", NAME], capture_output=True,
                          text=True).stdout.split()
    assert pids, "nothing runs in the namespace"
    for pid in pids:
        os.kill(int(pid), 9)
    assert vm("status", project=project, check=False).returncode == 1
    assert leftovers() != []
    vm("down", project=project)
    assert leftovers() == []
    assert host_view() == []
