"""The lab: zoo1-zoo3 as network-namespace machines at the VMs' addresses, and
the README's VM commands run in them as printed.

The tests make a lab of their own ($ZKDEMO_LAB=zkdtest), so a learner's lab
(zkdemo) is never touched, and take it down at the end. Everything aimed at
10.0.10.x runs inside a machine, through `lab.py ssh`: this machine's own
network namespace never connects there. Under CI=true a missing tool fails
the test, naming it; elsewhere the test is skipped.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from conftest import REPO, wait_until
from test_readme import missing, vm_command

LAB_NAME = "zkdtest"
LAB_PY = os.path.join(REPO, "provision", "lab.py")
ENV = dict(os.environ, ZKDEMO_LAB=LAB_NAME)
MACHINES = ("zoo1", "zoo2", "zoo3")
ADDRESSES = {"zoo1": "10.0.10.101", "zoo2": "10.0.10.102", "zoo3": "10.0.10.103"}
HOSTS = ",".join(ADDRESSES.values())


def lab(*args, check=True, timeout=300, env=ENV):
    result = subprocess.run([sys.executable, LAB_PY, *args], capture_output=True, text=True,
                            timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"lab.py {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}{result.stderr}")
    return result


def ssh(machine, command, timeout=120, check=True):
    return lab("ssh", machine, "--", command, timeout=timeout, check=check)


def what_is_missing():
    if os.geteuid() != 0:
        return ["root"]
    gone = [tool for tool in ("ip", "nsenter", "unshare", "nft", "debootstrap")
            if not shutil.which(tool)]
    if not (os.path.isdir("/sys/fs/cgroup/memory")
            or os.path.exists("/sys/fs/cgroup/cgroup.controllers")):
        gone.append("the cgroup memory controller")
    return gone


def leftovers(name=LAB_NAME):
    """Whatever of lab `name` still exists: namespaces, state, cgroups, mounts, processes."""
    found = [ns for ns in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                         text=True).stdout.split() if ns.startswith(name + "-")]
    state = f"/var/lib/zkdemo-lab/{name}"
    found += [p for p in (state, f"/sys/fs/cgroup/memory/{name}", f"/sys/fs/cgroup/{name}")
              if os.path.exists(p)]
    with open("/proc/self/mounts") as f:
        found += [line.split()[1] for line in f if line.split()[1].startswith(state)]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f"zkdemo-lab-holder {name} ".encode() in f.read():
                    found.append(f"holder process {pid}")
        except OSError:
            pass
    return found


def host_links():
    return {link["ifname"] for link in json.loads(
        subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True).stdout)}


@pytest.fixture(scope="module")
def the_lab():
    gone = what_is_missing()
    if gone:
        message = f"the lab cannot run here: {', '.join(gone)} missing"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    lab("down")   # whatever a killed run of ours left
    links_before = host_links()
    started = time.monotonic()
    up = lab("up", timeout=900)
    took = time.monotonic() - started
    try:
        yield {"up": up, "took": took, "links_before": links_before}
    finally:
        started = time.monotonic()
        down = lab("down", check=False, timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
        assert leftovers() == []
        assert time.monotonic() - started < 30


def test_up_makes_three_isolated_machines(the_lab):
    assert "lab: zoo1 " in the_lab["up"].stdout, the_lab["up"].stdout
    # Nothing of the lab appears in this machine's own namespace.
    assert host_links() == the_lab["links_before"]
    for machine in MACHINES:
        ns = f"{LAB_NAME}-{machine}"
        links = {link["ifname"] for link in json.loads(
            subprocess.run(["ip", "-n", ns, "-j", "link", "show"], capture_output=True,
                           text=True).stdout)}
        assert links == {"lo", "eth0"}
        for family in ("-4", "-6"):
            assert subprocess.run(["ip", "-n", ns, family, "route", "show", "default"],
                                  capture_output=True, text=True).stdout == ""
        inside = ssh(machine, "hostname; ip -4 -o addr show dev eth0; pwd; command -v python3")
        name, address, cwd, python = inside.stdout.splitlines()
        assert name == machine
        assert f"inet {ADDRESSES[machine]}/24" in address
        assert (cwd, python) == ("/vagrant", "/opt/zkdemo-venv/bin/python3")
    switch = {link["ifname"] for link in json.loads(subprocess.run(
        ["ip", "-n", f"{LAB_NAME}-switch", "-j", "link", "show"], capture_output=True,
        text=True).stdout)}
    assert switch == {"lo", "br0", *MACHINES}
    status = lab("status").stdout.splitlines()
    memory = open(os.path.join(REPO, "config", "vm")).read().split("memory_mb=")[1].split()[0]
    for line, machine in zip(status, MACHINES):
        assert re.match(rf"{machine}  {ADDRESSES[machine]} +(leader|follower) +memory \d+ of "
                        rf"{memory} MB \(peak \d+\)$", line), status


def test_a_second_up_is_quick_and_changes_nothing(the_lab):
    started = time.monotonic()
    again = lab("up")
    assert time.monotonic() - started < 10
    assert again.stdout == "lab: already up: zoo1 zoo2 zoo3 (lab.py status shows them)\n"


def test_bad_input_is_one_line(the_lab):
    for args, code, message in (
            (["ssh", "zoo9", "--", "true"], 2, "unknown machine 'zoo9'"),
            (["halt", "zoo4"], 2, "unknown machine 'zoo4'"),
            (["partition", "zoo1", "zoo1"], 2, "partition takes one machine"),
            (["partition", "zoo1", "zoo2", "zoo3"], 2, "partition takes one machine"),
            (["frobnicate"], 2, "invalid choice")):
        result = lab(*args, check=False)
        assert result.returncode == code, (args, result.stdout, result.stderr)
        assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr
    # A lab that is not up: partition, heal and status say so; down twice is fine.
    empty = dict(ENV, ZKDEMO_LAB="zkdnone")
    for args in (["partition", "zoo1"], ["heal"], ["ssh", "zoo1", "--", "true"]):
        result = lab(*args, check=False, env=empty)
        assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    for _ in range(2):
        result = lab("down", env=empty)
        assert result.stdout == "lab: the lab zkdnone is not up: nothing to take down\n"
    assert leftovers("zkdnone") == []


def reach(source, target):
    """Whether a TCP connection from machine source to target's port 2181 opens."""
    result = ssh(source, f"timeout 2 bash -c '</dev/tcp/{ADDRESSES[target]}/2181'", check=False)
    return result.returncode == 0


def test_partition_cuts_machines_off_and_heal_mends_them(the_lab):
    pairs = [("zoo1", "zoo2"), ("zoo1", "zoo3"), ("zoo2", "zoo3")]
    assert all(reach(a, b) and reach(b, a) for a, b in pairs)
    assert lab("partition", "zoo1").stdout == "lab: cut: zoo1 <-> zoo2, zoo1 <-> zoo3\n"
    assert [reach(a, b) for a, b in pairs] == [False, False, True]
    assert not reach("zoo2", "zoo1")
    lab("heal")
    lab("partition", "zoo1", "zoo3")   # only that link
    assert [reach(a, b) for a, b in pairs] == [True, False, True]
    assert not reach("zoo3", "zoo1")
    lab("heal")
    assert all(reach(a, b) and reach(b, a) for a, b in pairs)


# --- the README's VM commands, run in the lab ------------------------------------------

def vm_steps(text):
    """(commands, expected lines) for each README block meant for the VMs or
    the lab, with each command translated for the lab: `vagrant ssh zooN`
    alone starts a session on zooN for the lines after it; `vagrant ssh zooN
    -c 'CMD'` runs CMD there; `vagrant up/halt` are the lab's up/halt."""
    steps = []
    pattern = re.compile(r"```sh\n(.*?)```\n(\s*```text\n(.*?)```\n)?", re.S)
    for match in pattern.finditer(text):
        lines = [line for line in match.group(1).splitlines() if line.strip()
                 and not line.lstrip().startswith("#")]
        if not any(vm_command(line) for line in lines):
            continue
        session, commands = None, []
        for line in lines:
            command, _, comment = line.partition("  #")
            command = command.strip()
            if m := re.fullmatch(r"vagrant ssh (zoo\d)", command):
                session = m.group(1)
                continue
            if m := re.fullmatch(r"vagrant ssh (zoo\d) -c '(.*)'", command):
                command = ["ssh", m.group(1), "--", m.group(2)]
            elif m := re.fullmatch(r"vagrant (up|halt)((?: zoo\d)+)", command):
                command = [m.group(1), *m.group(2).split()]
            elif command.startswith("python3 provision/lab.py "):
                command = command.split()[2:]
            elif command == "make lab":
                command = ["make", "lab"]
            elif session:
                command = ["ssh", session, "--", command]
            else:
                raise AssertionError(f"a VM command the test cannot place: {line}")
            commands.append((command, "refused" in comment))
        expected = match.group(3).splitlines() if match.group(3) else None
        steps.append((commands, expected))
    return steps


def test_every_vm_command_in_the_readme_runs_in_the_lab(the_lab):
    steps = vm_steps(open(os.path.join(REPO, "README.md")).read())
    ran = [" ".join(c) for commands, _ in steps for c, _ in commands]
    # What the README must give for the VMs, and so what this test must run.
    for needed in ("up zoo1 zoo2 zoo3", "scripts/get.py --hosts 10.0.10.101",
                   "ssh zoo1 -- cd /vagrant", "ssh zoo1 -- /vagrant/scripts/acl-lockdown.py",
                   "ssh zoo2 -- /vagrant/scripts/acl-lockdown.py --hosts 10.0.10.102",
                   "zkCli.sh ls /", "/var/log/zookeeper/zookeeper.log", "partition zoo3"):
        assert any(needed in command for command in ran), f"the README never runs {needed!r}"
    for commands, expected in steps:
        output = ""
        for command, refused in commands:
            output += run_vm_command(command, refused, expected, output)
        if expected:
            assert not missing(expected, output), (
                f"{commands} never printed {missing(expected, output)}:\n{output}")


def run_vm_command(command, refused, expected, before):
    """Run one translated command; a read-only one (status.py, get.py) again,
    within a deadline, until its output shows what the README shows."""
    read_only = any("status.py" in part or "get.py" in part for part in command)
    deadline = time.monotonic() + 60
    while True:
        if command[0] == "make":
            result = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True,
                                    timeout=900, stdin=subprocess.DEVNULL)
        else:
            result = lab(*command, check=False, timeout=300)
        output = result.stdout + result.stderr
        ok = (result.returncode != 0) == refused and "Traceback" not in output
        settled = ok and not (expected and missing(expected, before + output))
        if settled or not read_only or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert ok, f"{command} exited {result.returncode}:\n{output}"
    if refused:
        assert "NoAuth" in output, output
    return output


def test_the_seeds_lockdown_story(the_lab):
    """Locked down from zoo1, / refuses zoo2 and zoo3 whichever server they
    use, with no --source, until zoo1 undoes it."""
    assert ssh("zoo1", "scripts/acl-lockdown.py").returncode == 0
    try:
        for machine in ("zoo2", "zoo3"):
            for server in ADDRESSES.values():
                result = ssh(machine, f"scripts/acl-lockdown.py --hosts {server}", check=False)
                assert result.returncode == 1, result.stdout + result.stderr
                assert result.stderr == (
                    f"acl-lockdown.py: ZooKeeper refused to change the ACL of / for a client "
                    f"at {ADDRESSES[machine]} (NoAuth): only 127.0.0.1 may\n")
    finally:
        undo = ssh("zoo1", "scripts/acl-lockdown.py --undo")
    assert "ACL of / after:  world:anyone:cdrwa" in undo.stdout
    # Open again: zoo2 may change / from its own address.
    assert ssh("zoo2", "scripts/acl-lockdown.py --undo --hosts 10.0.10.102").returncode == 0


def test_halt_and_up_bring_a_machine_back(the_lab):
    assert lab("halt", "zoo2").stdout == "lab: zoo2 halted\n"
    status = lab("status").stdout
    assert "zoo2  10.0.10.102     halted" in status
    assert not reach("zoo1", "zoo2")
    lab("up", "zoo2")
    wait_until(lambda: "zoo2  10.0.10.102     follower" in lab("status").stdout
               or "zoo2  10.0.10.102     leader" in lab("status").stdout, 60,
               interval=0.5, what="zoo2 to serve again")
    assert reach("zoo1", "zoo2")
