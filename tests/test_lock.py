"""lock.py and store.py: the README's lock story, both ways, and what goes wrong.

The story runs as the README tells it, with four terminals: the store, two
holders, and the reader's own for `kill -STOP` and `kill -CONT`. Without
fencing tokens the store must take the frozen holder's late write between
the new holder's; with them it must refuse it, naming both tokens. The
rest is what a learner may get wrong: no store, a store that dies, two
stores on one port, a token that is not a number, Ctrl-C while waiting.
"""

import itertools
import os
import re
import signal
import socket
import subprocess

import pytest

from conftest import NET, REPO, TIMESTAMP, run_script, utc_now, wait_until
from timeline import draw_lock, lock_story
from test_readme import (DEMO_IPS, LOCK_STORY, README, as_printed, localize, reader,  # noqa: F401
                         subsection, unshown, vm_command)

TERMINAL = re.compile(r"\b(second|third|fourth)\s+terminal")
README_STORE = "127.0.0.1:7000"
PORTS = itertools.count(7001)   # the stores of the tests below


def story_steps(text):
    """The story's blocks in order: ("sh", lines) and ("text", lines, the
    terminal they show: the first one the prose before them names, or None
    when they follow their command's block directly)."""
    part, steps, end = subsection(text, LOCK_STORY), [], 0
    for match in re.finditer(r"```(sh|text)\n(.*?)```\n", part, re.S):
        lines = [line for line in match.group(2).splitlines() if line.strip()]
        between = part[end:match.start()]
        if match.group(1) == "sh" and any(vm_command(line) for line in lines):
            pass   # the VMs' telling: test_readme.py runs it in the lab
        elif match.group(1) == "sh":
            steps.append(("sh", lines))
        else:
            named = TERMINAL.search(between)
            steps.append(("text", lines, named.group(1) if named and between.strip() else None))
        end = match.end()
    return steps


class Terminal:
    """A command the README runs in a terminal of its own."""

    def __init__(self, command, env, log):
        self.command = command
        self.log = log
        self.out = open(log, "w")
        self.process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=REPO, env=env,
                                        stdout=self.out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)

    def output(self):
        with open(self.log) as f:
            return f.read()

    def shows(self, text):
        return text in self.output()

    def end(self, timeout):
        code = self.process.wait(timeout)
        self.out.close()
        return code

    def kill(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGCONT)   # a frozen one, too
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.out.close()


def test_the_readmes_lock_story_both_ways(reader, tmp_path):
    """Without tokens the store takes the frozen holder's late write among
    the new holder's; with them it refuses it, and the holder learns it lost
    the lock. Every block of output shown is what the terminals show."""
    steps = story_steps(open(README).read())
    assert [kind for kind, *_ in steps].count("sh") >= 5, "the lock story was not found"
    store = f"{NET}.79.100:7000"
    record = str(tmp_path / "store.txt")
    reader.run("python3 provision/local-cluster.py up", None)
    reader.run("export ZKDEMO_HOSTS=" + ",".join(f"{ip}:2181" for ip in DEMO_IPS), None)
    reader.run(". .venv/bin/activate", None)
    terminals, ended, frozen, output, freezes = {}, {}, None, "", []

    def end_holders(holders):
        for terminal in holders:
            if terminal not in ended:
                ended[terminal] = terminal.end(90)

    runs = []   # per telling of the story: (first holder, second holder)
    try:
        for step in steps:
            if step[0] == "text":
                _, expected, shown = step
                if shown is None:
                    assert not unshown(expected, output), f"{unshown(expected, output)}:\n{output}"
                    continue
                terminal = terminals[shown]
                try:
                    wait_until(lambda: not unshown(expected, terminal.output()), 60)
                except AssertionError:
                    said = terminal.output()
                    raise AssertionError(f"the {shown} terminal: {unshown(expected, said)}:\n"
                                         f"{said}") from None
                continue
            output = ""
            for line in step[1]:
                command, _, comment = line.partition("  #")
                command = localize(command.strip()).replace(README_STORE, store) \
                    .replace("/tmp/store.txt", record)
                named = TERMINAL.search(comment)
                if named and not command.startswith("kill"):
                    name = named.group(1)
                    if name in terminals:   # "again": once the last telling's holders are done
                        end_holders(runs[-1])
                    terminals[name] = Terminal(command, reader.env,
                                               tmp_path / f"{name}-{len(ended)}.log")
                    wait_until(lambda: terminals[name].output().strip(), 30,
                               what=f"`{command}` to start")
                    if name == "fourth":
                        runs.append((terminals["third"], terminals["fourth"]))
                elif command.startswith("kill -STOP"):
                    first = terminals["third"]
                    wait_until(lambda: first.shows("write 2: accepted"), 30,
                               what="the first holder's second write")
                    frozen = re.search(r"pid (\d+): waiting", first.output()).group(1)
                    output += run(re.sub(r"\d+$", frozen, command))
                    freezes.append([utc_now()])
                elif command.startswith("kill -CONT"):
                    # "When it has written twice": the second holder.
                    second = terminals["fourth"]
                    wait_until(lambda: second.shows("write 2: accepted"), 60,
                               what="the second holder to take the lock and write twice")
                    output += run(re.sub(r"\d+$", frozen, command))
                    freezes[-1].append(utc_now())
                else:
                    output += reader.run(command, None)
        end_holders(runs[-1])   # both end on their own: one loses the lock, one's time is up
        os.killpg(terminals["second"].process.pid, signal.SIGINT)   # Ctrl-C: the store
        assert terminals["second"].end(30) == 130
    finally:
        for terminal in terminals.values():
            terminal.kill()

    assert len(runs) == 2, "the story is told twice, without and with tokens"
    for first, second in runs:
        assert ended[first] == 1 and "lost the lock" in first.output(), first.output()
        assert ended[second] == 0 and "time is up" in second.output(), second.output()
    for terminal in terminals.values():
        assert "Traceback" not in terminal.output(), terminal.output()

    # Let go, the first holder hears from kazoo what happened while it was
    # frozen: its connection had been closed, then its session had expired.
    said = runs[0][0].output()
    after = said[said.index("write 2: accepted"):]
    assert re.search(r"connection suspended[^\n]*\n(.*\n)*.*session lost", after), said
    assert "lost the lock: ZooKeeper expired the session" in after, said

    # Without tokens: the late write, in the store's file among the new holder's.
    writes = [line.split()[3:] for line in open(record)]   # token, ip, pid, N, write, K
    (first, second), fenced = runs[0], runs[1]
    a, b = (pid_of(t) for t in (first, second))
    order = [w[3] for w in writes if w[3] in (a, b)]
    assert a in order[order.index(b):], f"no write of {a} after {b}'s first:\n{writes}"
    # With tokens: refused, both tokens named; the accepted tokens never go down.
    late = re.search(r"write \d+: REJECTED: the store has seen fencing token (0x[0-9a-f]+), "
                     r"newer than ours \((0x[0-9a-f]+)\)", fenced[0].output())
    assert late, fenced[0].output()
    newer, older = (int(t, 16) for t in late.groups())
    assert older < newer
    assert f"REJECTED  token 0x{older:x} < highest 0x{newer:x}: " \
        f"127.0.0.1 pid {pid_of(fenced[0])} write" in terminals["second"].output()
    tokens = [int(w[0], 16) for w in writes if w[0] != "-"]
    assert tokens and tokens == sorted(tokens), writes
    assert int(re.search(r"fencing token (0x[0-9a-f]+)", fenced[1].output()).group(1), 16) == newer

    # The picture's data, from these logs: the late write is drawn accepted
    # inside the new holder's term without tokens, and refused with them.
    store_lines = terminals["second"].output().splitlines()
    panels = []
    for (first, second), (stopped, resumed), title in zip(runs, freezes, (
            "without fencing tokens (--no-fencing)", "with fencing tokens")):
        story = lock_story({f"first holder (pid {pid_of(first)})": first.output().splitlines(),
                            f"second holder (pid {pid_of(second)})":
                                second.output().splitlines()}, store_lines)
        verdicts = [(m.holder.split()[0], m.verdict) for m in story["marks"]]
        late = "late" if title.startswith("without") else "rejected"
        assert ("first", late) in verdicts and \
            {"late", "rejected"} - {late} - {v for _, v in verdicts}, verdicts
        assert [t.holder.split()[0] for t in story["terms"]] == ["first", "second"], story
        assert story["terms"][0].start < stopped < story["terms"][1].start < resumed
        panels.append((title, story, (stopped, resumed)))
    if os.environ.get("ZKDEMO_DRAW_LOCK"):   # how docs/lock-timeline.svg is made
        with open(os.environ["ZKDEMO_DRAW_LOCK"], "w") as f:
            f.write(draw_lock(panels))


def pid_of(holder):
    return re.search(r"pid (\d+): waiting", holder.output()).group(1)


def run(command):
    result = as_printed(["bash", "-c", command], 30)
    assert result.returncode == 0, f"`{command}`: {result.stdout}"
    return result.stdout


# --- what goes wrong ---------------------------------------------------------------

@pytest.fixture
def store(tmp_path, scripts):
    """A store.py of the test's own, on an address of its own."""
    address = f"{NET}.77.200:{next(PORTS)}"
    process = scripts("store.py", "--listen", address, "--file", str(tmp_path / "store.txt"))
    process.wait_for(lambda m: m.startswith("listening on"), 30, what="the store to listen")
    process.address = address
    return process


def holder(scripts, ensemble, store, *args):
    return scripts("lock.py", *args, "--store", store.address, hosts=ensemble.hosts)


def contenders(zk, name):
    path = f"/zkdemo-locks/{name}"
    return zk.get_children(path) if zk.exists(path) else []


def test_without_a_store_lock_py_says_so_before_it_takes_the_lock(ensemble, zk):
    address = f"{NET}.77.199:7000"   # nothing listens there
    result = run_script("lock.py", "5", "--name", "nostore", "--store", address,
                        hosts=ensemble.hosts)
    assert result.returncode == 1
    assert result.stderr == (f"lock.py: nothing listens at {address}: start store.py there "
                             f"first (store.py --listen {address})\n")
    assert contenders(zk, "nostore") == []


def test_a_store_that_dies_mid_run_ends_the_holder_and_frees_the_lock(ensemble, zk, scripts,
                                                                       store):
    a = holder(scripts, ensemble, store, "30", "--name", "dies")
    a.wait_for(lambda m: m == "write 2: accepted", 30, what="two writes")
    store.kill()
    assert a.wait(15) == 1
    assert a.stderr.startswith(f"lock.py: the store at {store.address} went away mid-write")
    assert len(a.stderr.splitlines()) == 1 and "Traceback" not in a.stderr
    assert contenders(zk, "dies") == []   # at once: lock.py deleted it, not an expiry


def test_two_stores_on_one_port_the_second_says_so(scripts, store, tmp_path):
    result = run_script("store.py", "--listen", store.address, "--file",
                        str(tmp_path / "other.txt"))
    assert result.returncode == 1
    assert result.stderr == (f"store.py: {store.address} is taken: another store.py (or "
                             "another program) listens there already\n")
    assert answer(store.address, "WRITE 0x7 still here") == "ACCEPTED 0x7"


def test_a_token_that_is_not_a_number_is_refused_and_the_store_goes_on(store, tmp_path):
    assert answer(store.address, "WRITE abc someone") == "ERROR the token 'abc' is not a number"
    assert answer(store.address, "HELLO") == "ERROR expected: WRITE TOKEN TEXT"
    assert answer(store.address, "WRITE 0x10 someone write 1") == "ACCEPTED 0x10"
    assert answer(store.address, "WRITE 15 someone write 2") == "REJECTED 0x10"
    store.wait_for(lambda m: m.startswith("REJECTED  token 0xf < highest 0x10: someone"), 10)
    assert store.count(lambda m: m.startswith("refused   ")) == 2
    lines = (tmp_path / "store.txt").read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == ["token 0x10 someone write 1"]
    assert store.stop(signal.SIGINT) == 130
    assert store.lines[-1].endswith("stopped: 1 writes accepted, 1 rejected")


def test_ctrl_c_while_waiting_deletes_the_znode_at_once(ensemble, zk, scripts, store):
    a = holder(scripts, ensemble, store, "30", "--name", "waiting")
    a.wait_for(lambda m: m.startswith("holding the lock"), 30, what="the lock")
    b = holder(scripts, ensemble, store, "30", "--name", "waiting")
    b.wait_for(lambda m: "waiting for the lock" in m, 30)
    wait_until(lambda: len(contenders(zk, "waiting")) == 2, 10, what="b's znode")
    assert b.stop(signal.SIGINT) == 130
    assert re.match(TIMESTAMP + r"stopped waiting: deleted /zkdemo-locks/waiting/", b.lines[-1])
    assert len(contenders(zk, "waiting")) == 1 and b.stderr == ""
    # Ctrl-C while holding lets go at once too: nobody is left behind.
    assert a.stop(signal.SIGINT) == 130 and a.stderr == ""
    assert contenders(zk, "waiting") == []


def test_a_znode_deleted_by_another_client_ends_the_hold(ensemble, zk, scripts, store):
    a = holder(scripts, ensemble, store, "30", "--name", "deleted")
    a.wait_for(lambda m: m == "write 1: accepted", 30, what="a write")
    node, = contenders(zk, "deleted")
    zk.delete(f"/zkdemo-locks/deleted/{node}")   # as zkCli.sh's `delete` would
    assert a.wait(10) == 1
    assert a.messages()[-1] == f"lost the lock: another client deleted /zkdemo-locks/deleted/{node}"


def test_a_late_write_before_the_new_holders_first_is_accepted(ensemble, zk, scripts, store,
                                                               tmp_path):
    """The store learns of a new holder only from its first write, a second
    after it took the lock: a frozen holder let go within that second has its
    late write accepted, its token being the highest the store has seen. The
    writes still come one holder's after the other's."""
    a = holder(scripts, ensemble, store, "60", "--name", "early")
    a.wait_for(lambda m: m == "write 1: accepted", 30, what="a's first write")
    b = holder(scripts, ensemble, store, "10", "--name", "early")
    b.wait_for(lambda m: "waiting for the lock" in m, 30)
    # Frozen just after a write, in its wait before the next: let go, it writes.
    written = a.count(lambda m: m.endswith(": accepted"))
    wait_until(lambda: a.count(lambda m: m.endswith(": accepted")) > written, 10,
               what="a's next write")
    os.kill(a.proc.pid, signal.SIGSTOP)
    try:
        b.wait_for(lambda m: m.startswith("holding the lock"), 40, what="b to take the lock")
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)
    assert a.wait(40) == 1
    said = a.messages()
    assert any(m.startswith("session lost") for m in said), "\n".join(said)
    assert any(m.startswith("lost the lock: ") for m in said), "\n".join(said)
    b.wait_for(lambda m: m == "write 1: accepted", 10, what="b's first write")
    took = next(line[:23] for line in b.lines if "holding the lock" in line)
    writes = [line.split() for line in (tmp_path / "store.txt").read_text().splitlines()]
    # date, time, "token", TOKEN, ip, "pid", PID, "write", N
    late = [w for w in writes if w[6] == str(a.proc.pid) and " ".join(w[:2]) > took]
    first = [w for w in writes if w[6] == str(b.proc.pid)][0]
    assert len(late) == 1 and writes.index(late[0]) + 1 == writes.index(first), writes
    assert int(late[0][3], 16) < int(first[3], 16)   # accepted: no higher token seen yet
    assert f"write {late[0][-1]}: accepted" in a.messages()
    tokens = [int(w[3], 16) for w in writes]
    assert tokens == sorted(tokens), writes   # one holder's writes after the other's


def answer(address, line):
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(line.encode() + b"\n")
        return s.makefile().readline().strip()
