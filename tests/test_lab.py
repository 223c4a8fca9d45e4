"""The lab: zoo1-zoo3 as network-namespace machines at the VMs' addresses, and
the README's VM commands run in them as printed.

The tests make a lab of their own ($ZKDEMO_LAB=zkdtest), so a learner's lab
(zkdemo) is never touched, and take it down at the end. Everything aimed at
10.0.10.x runs inside a machine, through `lab.py ssh`: this machine's own
network namespace never connects there. Under CI=true a missing tool fails
the test, naming it; elsewhere the test is skipped.
"""

import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import (REPO, WORKER_NUMBER, OutputProcess, removed_leftovers, require, wait_until,
                      utc_now)
from history import check, leading
from test_readme import as_printed, unshown, sh_blocks, swapped, vm_command

# A lab for each worker of the run; $ZKDEMO_TEST_LAB renames them, for two checkouts tested at once.
LAB_NAME = f"{os.environ.get('ZKDEMO_TEST_LAB', 'zkdtest')}{WORKER_NUMBER or ''}"
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


def ssh(machine, command, timeout=120, check=True, env=ENV):
    return lab("ssh", machine, "--", command, timeout=timeout, check=check, env=env)


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
    # By their names only: test_vms's zkdtest-vm is not the lab zkdtest's.
    ours = {f"{name}-{machine}" for machine in ("switch", *MACHINES)}
    found = [ns for ns in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                         text=True).stdout.split() if ns in ours]
    state = f"/var/lib/zkdemo-lab/{name}"
    found += [p for p in (state, f"/sys/fs/cgroup/memory/{name}", f"/sys/fs/cgroup/{name}")
              if os.path.exists(p)]
    with open("/proc/self/mounts") as f:
        found += [line.split()[1] for line in f
                  if line.split()[1] == state or line.split()[1].startswith(state + "/")]
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
    yield from lab_up()


def lab_up():
    """The tests' lab, up; taken down, with nothing left, at the end."""
    gone = what_is_missing()
    require(", ".join(gone) + " (for the lab)", not gone)
    removed_leftovers("test_lab", lab("down"))   # whatever a killed run of ours left
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
        assert time.monotonic() - started < 10, "make lab-down's target is 10 s"


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


def test_ssh_keeps_a_command_line_or_each_word_as_given(the_lab):
    """One word after -- is a command line for the machine's shell (as
    `vagrant ssh -c` takes one); several words are one command, each word
    kept: `bash -c '...'` reaches bash as one argument, spaces and all."""
    assert lab("ssh", "zoo1", "--", "echo one | tr o O && hostname").stdout == "One\nzoo1\n"
    words = lab("ssh", "zoo1", "--", "bash", "-c", 'echo "a  b"; echo $0', "zero")
    assert words.stdout == "a  b\nzero\n", words.stdout + words.stderr
    assert lab("ssh", "zoo1", "--", "printf", "%s|", "it's", "a b").stdout == "it's|a b|"


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
    for lines, expected in sh_blocks(text):
        if not any(vm_command(line) for line in lines):
            continue
        if any(" terminal" in line.partition("  #")[2] for line in lines):
            continue   # readers left running beside the steps: test_readme.py runs that block
        if any("provision/vm.py" in line for line in lines):
            continue   # the real VMs: tests/test_vms.py runs that block
        if any("make chaos" in line for line in lines):
            continue   # tests/test_chaos.py runs that block
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
            commands.append((command, "refused" if "refused" in comment
                             else "exits 1" if "exits 1" in comment else None))
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
    names = None   # the names swapped, from the partition to its heal
    for commands, expected in steps:
        # The partition section is written for zoo3 leading, and says to
        # swap names if another machine does: as a reader would, until the heal.
        if any(command[:2] == ["partition", "zoo3"] for command, _ in commands):
            leader = zk_leader()
            names = {leader: "zoo3", "zoo3": leader} if leader != "zoo3" else {}
        output = ""
        for command, fails in commands:
            command = [swapped(word, names or {}) for word in command]
            output += run_vm_command(command, fails, expected, output)
            if command == ["heal"] and names is not None:
                # As the README says, the cut-off server rejoins, though not at once.
                healed = time.monotonic()
                wait_until(lambda: sorted(srvr(m).get("Mode", "") for m in MACHINES)
                           == ["follower", "follower", "leader"], 60, interval=0.5,
                           what="the cut-off server to rejoin after the heal")
                print(f"\nlab: rejoined {time.monotonic() - healed:.1f} s after the heal",
                      file=sys.stderr)
                names = None
        if expected:
            assert not unshown(expected, output), (
                f"{commands}: {unshown(expected, output)}:\n{output}")


def run_vm_command(command, fails, expected, before):
    """Run one translated command; a read-only one (status.py, get.py) again,
    within a deadline, until its output shows what the README shows. `fails`:
    "refused" (by ZooKeeper, NoAuth), "exits 1", or None (it must succeed)."""
    read_only = any("status.py" in part or "get.py" in part for part in command)
    deadline = time.monotonic() + 60
    while True:
        argv = command if command[0] == "make" else [sys.executable, LAB_PY, *command]
        result = as_printed(argv, 900, cwd=REPO, env=ENV)
        output = result.stdout
        ok = (result.returncode != 0) == bool(fails) and "Traceback" not in output
        settled = ok and not (expected and unshown(expected, before + output))
        if settled or not read_only or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert ok, f"{command} exited {result.returncode}:\n{output}"
    if fails == "refused":
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


def test_up_finds_and_replaces_a_machine_a_killed_run_left(the_lab):
    """zoo3's processes all killed (as when the machine running the lab
    crashes): its namespace, mounts and cgroup are left; up cleans and remakes it."""
    cgroup = f"/sys/fs/cgroup/memory/{LAB_NAME}/zoo3/cgroup.procs"
    if not os.path.exists(cgroup):
        cgroup = f"/sys/fs/cgroup/{LAB_NAME}/zoo3/cgroup.procs"
    for pid in open(cgroup).read().split():
        os.kill(int(pid), 9)
    wait_until(lambda: open(cgroup).read() == "", 10, what="zoo3's processes to die")
    assert "zoo3  10.0.10.103     halted" in lab("status").stdout
    lab("up", "zoo3")
    wait_until(lambda: re.search(r"zoo3  10\.0\.10\.103 +(leader|follower)", lab("status").stdout),
               60, interval=0.5, what="zoo3 to serve again")
    assert reach("zoo1", "zoo3")


def test_halt_and_up_bring_a_machine_back(the_lab):
    assert lab("halt", "zoo2").stdout == "lab: zoo2 halted\n"
    status = lab("status").stdout
    assert "zoo2  10.0.10.102     halted" in status
    assert not reach("zoo1", "zoo2")
    # up returns once the machines it brought back serve, and says so: no
    # "zoo2 down" for a learner to read as a failure.
    said = lab("up", "zoo2").stdout
    assert re.fullmatch(r"lab: zoo1 (leader|follower), zoo2 (leader|follower), "
                        r"zoo3 (leader|follower)", said.splitlines()[-1]), said
    assert re.search(r"zoo2  10\.0\.10\.102 +(leader|follower)", lab("status").stdout)
    assert reach("zoo1", "zoo2")


# --- partitions under running electors and watchers -------------------------------------

SESSION_S = 4.0   # the least the lab's servers grant: 2 ticks of 2 s


class OnMachine(OutputProcess):
    """A tutorial script running on a lab machine, as a VM user starts it."""

    def __init__(self, machine, script, *args, env=ENV):
        self.machine = machine
        super().__init__([sys.executable, LAB_PY, "ssh", machine, "--",
                          f"exec scripts/{script} {' '.join(args)}"], env=env)


def zk_leader(env=ENV):
    for line in lab("status", env=env).stdout.splitlines():
        if line.split()[2:3] == ["leader"]:
            return line.split()[0]
    return None


def srvr(machine, env=ENV):
    """The machine's server's answer to srvr, asked inside the machine ({} if none)."""
    answer = ssh(machine, "python3 provision/zkensemble.py srvr 127.0.0.1 2181", check=False,
                 env=env).stdout
    return dict(line.split(": ", 1) for line in answer.splitlines() if ": " in line)


def zxid(machine):
    fields = srvr(machine)
    return fields.get("Zxid") if fields.get("Mode") in ("leader", "follower") else None


class Scene:
    """watch.py on every machine, create.py electors (the first, on `first`,
    leads), a partition, and the checks of issue 12 once it is healed."""

    def __init__(self, first):
        self.processes = []
        self.watchers = {m: self.start(m, "watch.py") for m in MACHINES}
        for watcher in self.watchers.values():
            watcher.wait_for(lambda line: line.startswith("watching /zkdemo"), timeout=60)
        self.electors = [self.start(first, "create.py", "300", "--session-timeout", str(SESSION_S))]
        self.electors[0].wait_for(lambda line: line == "became leader", timeout=60)
        for machine in MACHINES:
            elector = self.start(machine, "create.py", "300", "--session-timeout", str(SESSION_S))
            elector.wait_for(lambda line: line.startswith("following "), timeout=60)
            self.electors.append(elector)

    def start(self, machine, script, *args):
        process = OnMachine(machine, script, *args)
        self.processes.append(process)
        return process

    def cut(self, *machines):
        self.cut_at = utc_now()
        lab("partition", *machines)
        self.cut_done = utc_now()   # the cut is in place by now, not before

    def takeover(self, minority):
        """Wait until an elector outside `minority` leads."""
        wait_until(lambda: any(leading(e.lines) for e in self.electors
                               if e.machine not in minority), 90, interval=0.2,
                   what="an elector of the majority to lead")

    def heal(self):
        self.healed_at = utc_now()
        lab("heal")
        marker = f"/zkdemo/healed-{int(time.time() * 1000)}"
        wait_until(lambda: re.search(r"Created|Node already exists", ssh(
            "zoo1", f"/usr/share/zookeeper/bin/zkCli.sh create {marker} x 2>&1").stdout),
            90, interval=0.5, what="a write through zoo1 after the heal")
        for watcher in self.watchers.values():   # every watch.py reports again
            watcher.wait_for(lambda line: line.startswith(f"created {marker}"), timeout=90)
        wait_until(lambda: len({zxid(m) for m in MACHINES} - {None}) == 1
                   and None not in {zxid(m) for m in MACHINES}, 90, interval=0.5,
                   what="the three servers to converge on one zxid")

    def finish(self, minority):
        made = lambda: {line.split()[1] for e in self.electors for line in e.messages()  # noqa
                        if line.startswith("created /zkdemo/node-")}
        for machine, watcher in self.watchers.items():
            if machine not in minority:   # watch.py on the majority side misses nothing
                wait_until(lambda: made() <= {line.split()[1] for line in watcher.messages()
                                              if line.startswith(("created ", "present "))},
                           30, what=f"watch.py on {machine} to report every elector's znode")
        for process in self.processes:
            assert process.stop(timeout=60) == 143, process.lines + [process.stderr]
            assert "Traceback" not in process.stderr, process.stderr
        terms = check([(f"{e.machine}#{i}", e.lines, True) for i, e in enumerate(self.electors)])
        # Nobody in the minority leads past its session timeout after the cut.
        # Until the partition command has put the cut in place, the minority's
        # leader may still be heard (and its lease renewed): count from then.
        limit = self.cut_done + datetime.timedelta(seconds=SESSION_S)
        for term in terms:
            if term.process.split("#")[0] in minority and term.start < self.healed_at:
                end = term.end or datetime.datetime.max
                assert not (term.start < limit < end or limit <= term.start), (
                    f"{term.process} led from {term.start} to {term.end} in the minority "
                    f"(cut between {self.cut_at} and {self.cut_done})")
        took_over = min(t.start for t in terms if t.start > self.cut_at)
        print(f"\ncut at {self.cut_at.time()}, a majority elector led at {took_over.time()} "
              f"({(took_over - self.cut_at).total_seconds():.2f} s), healed at "
              f"{self.healed_at.time()}; {len(terms)} terms, no overlap")
        return terms

    def kill(self):
        for process in self.processes:
            process.kill()


@pytest.fixture
def scene(the_lab):
    scenes = []

    def make(first):
        ssh("zoo1", "/usr/share/zookeeper/bin/zkCli.sh deleteall /zkdemo >/dev/null 2>&1; true")
        scenes.append(Scene(first))
        return scenes[-1]
    yield make
    lab("heal", check=False)
    for made in scenes:
        made.kill()


# Where the election's leader runs, and what is cut; the last machine named
# is the one left in the minority.
PARTITIONS = {
    "the ZooKeeper leader's machine, the election's leader on it": ("leader", ["leader"]),
    "the link between the ZooKeeper leader and the election leader's machine":
        ("follower", ["leader", "follower"]),
    "the election leader's machine": ("follower", ["follower"]),
}


@pytest.mark.parametrize("case", PARTITIONS)
def test_partition(scene, case):
    machine = {"leader": zk_leader()}
    machine["follower"] = next(m for m in MACHINES if m != machine["leader"])
    first, cut = PARTITIONS[case]
    minority = {machine[cut[-1]]}
    play = scene(machine[first])
    play.cut(*(machine[role] for role in cut))
    play.takeover(minority)
    play.heal()
    play.finish(minority)


def test_the_bench_stopped_in_its_lab_row_leaves_nothing(tmp_path):
    """`make bench` SIGTERMed (a `timeout` around it, CI's limit) while its
    lab row's machine is up: that lab goes, with everything it made, and the
    bench exits 130 without a traceback."""
    gone = what_is_missing()
    require(", ".join(gone) + " (for the lab)", not gone)
    name = "zkdb256"   # the lab of bench_lab's first row
    env = dict(os.environ, BENCH_ONLY="lab", BENCH_JSON=str(tmp_path / "bench.json"))
    process = subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "bench.py")],
                               cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        wait_until(lambda: process.poll() is not None
                   or any(f.startswith("holder process") for f in leftovers(name)),
                   180, interval=0.2, what="the bench's lab to be up")
        assert process.poll() is None, process.communicate()[0]
        os.killpg(process.pid, signal.SIGTERM)   # as `timeout` sends it
        output = process.communicate(timeout=300)[0]
        wait_until(lambda: leftovers(name) == [], 60, interval=0.5,
                   what=f"the bench's lab to go: {leftovers(name)}")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if leftovers(name):
            lab("down", env=dict(ENV, ZKDEMO_LAB=name), check=False)
    assert process.returncode == 130 and "Traceback" not in output, output
