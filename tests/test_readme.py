"""The README runs: every loopback command of the tutorial, in order.

The commands are the lines of the README's ```sh blocks. They run as a reader
runs them, in one shell session's worth of environment (`export` and
`. .venv/bin/activate` carry over), against an ensemble of the test's own:
127.0.10.x becomes 127.0.79.x and `make demo` is pointed at it with
$ZKDEMO_IPS and $ZKDEMO_STATE_DIR, so a demo ensemble is never touched.

What each command must do:
- exit 0, unless its comment says it is refused or exits 1;
- when a ```text block follows its ```sh block directly, it shows what the
  block's commands printed (unshown()): every line shown appears in the real
  output, in the same order, and every real line not shown stands where the
  README has a `...` line. Lines are compared in shape: times, numbers, pids,
  paths under /tmp, and leader/follower may differ.
A command whose comment says "in a second (third...) terminal" runs in the background
until the end, and its output is checked against its block then. A read-only
command (get.py, status.py) is retried, within a deadline, until the state it
shows has settled, as a reader would run it again.

The Exercises section asks the reader to fill in what they saw (the leader's
znode, the leading server's number); test_the_exercises_show_what_they_say
runs it, filling in the same from the output as a reader would.

Left out, and why: blocks for the VMs and the lab (they mention vagrant,
10.0.10.x or the lab; this machine's own namespace must never talk to those
addresses: tests/test_lab.py runs them inside the lab's machines), and
`make test` (this is it).
"""

import contextlib
import datetime
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import types

import pytest

from conftest import NET, REPO, STATE_ROOT, TIMESTAMP, OutputProcess, wait_until, utc_now
from history import stamp

README = os.path.join(REPO, "README.md")
DEMO_IPS = ["127.0.10.101", "127.0.10.102", "127.0.10.103"]
TEST_IPS = [f"{NET}.79.{i}" for i in (101, 102, 103)]
READ_ONLY = ("scripts/get.py", "scripts/status.py")
# A command left running beside the others, in a terminal of its own.
BESIDE = re.compile(r"in a (second|third|fourth) terminal")


def sh_blocks(text):
    """(lines, expected output lines or None) for each ```sh block of a
    README: its lines without blanks and whole-line comments, and the lines of
    the ```text block right after it, if any. test_lab.py and test_vms.py pick
    their blocks from these too."""
    found = []
    pattern = re.compile(r"```sh\n(.*?)```\n(\s*```text\n(.*?)```\n)?", re.S)
    for match in pattern.finditer(text):
        lines = [line for line in match.group(1).splitlines()
                 if line.strip() and not line.lstrip().startswith("#")]
        found.append((lines, match.group(3).splitlines() if match.group(3) else None))
    return found


def blocks(text):
    """(commands, expected output lines or None) for each loopback ```sh block."""
    found = []
    for lines, expected in sh_blocks(text):
        commands = [line for line in lines if line.strip() != "make test"]
        if any(vm_command(c) for c in commands):
            continue  # for the VMs or the lab: tests/test_lab.py runs those
        if commands:
            found.append((commands, expected))
    return found


def section(text, title):
    """The README's `## title` section, up to the next `## ` heading."""
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else len(text)]


def subsection(text, title):
    """The README's `### title` subsection, up to the next heading of any level."""
    start = text.index(f"\n### {title}\n")
    end = re.compile(r"\n##+ ").search(text, start + 1)
    return text[start:end.start() if end else len(text)]


# The lock story, run by tests/test_lock.py: its steps wait on what other terminals show.
LOCK_STORY = "lock.py and store.py: a lock, and why it needs a fencing token"


def vm_command(command):
    """A command for the VMs or the lab, not for the loopback ensemble."""
    command = command.partition("#")[0]
    return any(word in command for word in ("vagrant", "10.0.10.", "provision/lab.py",
                                             "make lab", "make chaos"))


def shape(line):
    """A line with what differs from run to run folded away."""
    line = re.sub("^" + TIMESTAMP, "", line)
    line = re.sub(r"\{[^{}]*\}", "{…}", line)                # create.py's JSON
    line = re.sub(r"\b[0-9a-f]{32}__lock__", "…__lock__", line)  # kazoo's lock znodes
    line = re.sub(r"/tmp/\S*/", "/tmp/…/", line)
    line = re.sub(r"\b(leader|follower)\b", "ROLE", line)
    line = re.sub(r"0x[0-9a-f]+", "0x…", line)
    line = re.sub(r"\d+(\.\d+)?", "N", line)
    line = re.sub(r"(N )+N\b", "N…", line)                    # lists of pids
    return " ".join(line.split())


def unshown(expected, output):
    """Why `output` is not what the README shows as `expected`, or None if it is.

    The lines shown must appear in the real output in the same order, each
    matching one real line in shape (see shape()), and a real line that is not
    shown may stand only where the README has a `...` line: `...` stands for
    any number of lines, none included."""
    pattern = servers_together([line for line in expected if line.strip()])
    lines = servers_together([line for line in output.splitlines() if line.strip()])
    # reach[i][j]: the first i lines shown account for the first j real lines.
    reach = [[False] * (len(lines) + 1) for _ in range(len(pattern) + 1)]
    reach[0][0] = True
    for i, shown in enumerate(pattern):
        for j in range(len(lines) + 1):
            if not reach[i][j]:
                continue
            if shown is None:
                for k in range(j, len(lines) + 1):
                    reach[i + 1][k] = True
            elif j < len(lines) and lines[j] == shown:
                reach[i + 1][j + 1] = True
    if reach[len(pattern)][len(lines)]:
        return None
    got = max(i for i in range(len(pattern) + 1) if any(reach[i]))
    at = max(j for j in range(len(lines) + 1) if reach[got][j])
    if got == len(pattern):
        return (f"it printed lines the README does not show, with no `...` for them: "
                f"{lines[at:at + 3]}")
    if at == len(lines):
        return f"it never printed {pattern[got]!r}"
    return f"where the README shows {pattern[got]!r}, it printed {lines[at]!r}"


# status.py's line for one server: its time, then the server's address.
SERVER_LINE = re.compile(TIMESTAMP + r"\d+\.\d+\.\d+\.\d+:\d+ ")


def servers_together(lines):
    """Lines as shapes, `...` as None, and status.py's lines (one per server,
    in address order) as one unordered item: which address leads, follows or
    is down differs from run to run."""
    merged = []
    for line in lines:
        if line.strip() == "...":
            merged.append(None)
        elif SERVER_LINE.match(line):
            if merged and isinstance(merged[-1], tuple):
                merged[-1] = tuple(sorted(merged[-1] + (shape(line),)))
            else:
                merged.append((shape(line),))
        else:
            merged.append(shape(line))
    return merged


def as_printed(argv, timeout, **kwargs):
    """Run a command of the README as a terminal shows it: what it prints and
    its errors in one stream, in the order they came (in `.stdout`)."""
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, **kwargs)


def localize(command):
    for demo, test in zip(DEMO_IPS, TEST_IPS):
        command = command.replace(demo, test)
    return command


class Reader:
    """Runs README commands with the environment a reader's shell would have."""

    def __init__(self, tmp_path):
        self.env = dict(os.environ, ZKDEMO_IPS=",".join(TEST_IPS),
                        ZKDEMO_STATE_DIR=os.path.join(STATE_ROOT, "readme"),
                        ZKDEMO_RUN_DIR=str(tmp_path / "run"))
        self.background = []   # (command, process, output file, expected lines)
        self.tmp_path = tmp_path

    def run(self, command, expected, before="", last=True):
        """Run one command; `before` is what the block's earlier commands
        printed. Only the block's last command is run again until its output
        settles: an earlier one shows the state before the later ones ran."""
        comment = command.partition("#")[2]
        command = localize(command.partition("  #")[0].strip())
        if command.startswith("export "):
            name, _, value = command[len("export "):].partition("=")
            self.env[name] = value
            return ""
        if command == ". .venv/bin/activate":
            self.env["VIRTUAL_ENV"] = os.path.join(REPO, ".venv")
            self.env["PATH"] = os.path.join(REPO, ".venv", "bin") + ":" + self.env["PATH"]
            return ""
        if BESIDE.search(comment):
            out = open(self.tmp_path / f"background-{len(self.background)}.log", "w+")
            process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=REPO,
                                       env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
            self.background.append((command, process, out, expected))
            # A reader goes on once the new terminal shows the command has
            # started (watch.py's first listing, the recorder's first line).
            wait_until(lambda: open(out.name).read().strip() or process.poll() is not None,
                       30, what=f"`{command}` to print its first line")
            return ""
        should_fail = "refused" in comment or "exits 1" in comment
        # What a reader types when a script asks (a password): here from the
        # environment, as the script also takes it; test_digest_status types it.
        typed = re.search(r"when asked, type: (\S+)", comment)
        env = dict(self.env, ZKDEMO_PASSWORD=typed.group(1)) if typed else self.env
        deadline = time.monotonic() + 60
        while True:
            result = as_printed(["bash", "-c", command], 300, cwd=REPO, env=env)
            output = result.stdout
            ok = (result.returncode != 0) == should_fail
            settled = ok and not (expected and unshown(expected, before + output)) and \
                "Traceback" not in output
            if settled or not last or not any(r in command for r in READ_ONLY) \
                    or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert ok, f"`{command}` exited {result.returncode}:\n{output}"
        assert "Traceback" not in output, f"`{command}`:\n{output}"
        return output

    def stop_background(self):
        for command, process, out, expected in self.background:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)   # Ctrl-C
                process.wait(timeout=30)
            out.seek(0)
            output = out.read()
            out.close()
            # Ctrl-C ends a script with 130; it is how the recorder finishes its page.
            done = 0 if "timeline.py record" in command else 130
            assert process.returncode == done, f"`{command}` exited {process.returncode}"
            assert "Traceback" not in output, f"`{command}`:\n{output}"
            if expected:
                # A terminal left running shows the whole tutorial's worth: the
                # README shows its first lines, and `...` for the rest.
                assert not unshown(expected, output), (
                    f"`{command}`: {unshown(expected, output)}:\n{output}")


@pytest.fixture
def reader(tmp_path):
    reader = Reader(tmp_path)
    # A newcomer starts with no ensemble and no data.
    subprocess.run(["python3", "provision/local-cluster.py", "down"], cwd=REPO,
                   env=reader.env, capture_output=True, timeout=120)
    shutil.rmtree(reader.env["ZKDEMO_STATE_DIR"], ignore_errors=True)
    yield reader
    for _, process, out, _ in reader.background:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        out.close()
    subprocess.run(["bash", "-c", f"exec {os.path.join(REPO, '.venv/bin/python')} "
                    "scripts/create-stop.py"], cwd=REPO, env=reader.env,
                   capture_output=True, timeout=60)
    subprocess.run(["python3", "provision/local-cluster.py", "down"], cwd=REPO,
                   env=reader.env, capture_output=True, timeout=120)


def test_every_loopback_command_in_the_readme_works(reader):
    text = open(README).read()
    for elsewhere in (section(text, "Exercises"), subsection(text, LOCK_STORY)):
        text = text.replace(elsewhere, "\n")   # run by their own tests
    steps = blocks(text)
    assert len(steps) > 15, "the README's commands were not found"
    for commands, expected in steps:
        output = ""
        for number, command in enumerate(commands):
            output += reader.run(command, expected, output, last=number == len(commands) - 1)
        background = any(BESIDE.search(c.partition("#")[2]) for c in commands)
        if expected and not background:
            assert not unshown(expected, output), (
                f"{commands}: {unshown(expected, output)}:\n{output}")
    reader.stop_background()


def test_an_output_block_must_show_what_was_printed():
    """unshown(): the lines shown, in order, and `...` wherever a real line is not shown."""
    printed = "12:00:00.001 staying 3.0 s\n12:00:00.010 created /zkdemo/node-0000000033\n" \
              "12:00:00.012 became leader\n12:00:03.001 time is up\n"
    shown = ["11:20:02.114 staying 3.0 s", "11:20:02.120 created /zkdemo/node-0000000007",
             "11:20:02.122 became leader", "11:20:05.001 time is up"]
    assert unshown(shown, printed) is None
    assert unshown(shown[:1] + ["..."], printed) is None
    assert unshown(["...", shown[2], "..."], printed) is None
    # Planted: a line left out without `...`, one out of order, one never printed.
    assert "does not show" in unshown(shown[:3], printed)
    assert "never printed" not in unshown([shown[0], shown[2], shown[1], "..."], printed)
    assert unshown([shown[0], shown[2], shown[1], "..."], printed)
    assert "never printed 'no longer ROLE'" in unshown(shown + ["no longer leader"], printed)
    assert unshown([shown[0], shown[2], "..."], printed).startswith("where the README shows")
    # status.py's server lines stand together, in any order; one left out is caught.
    status = "\n".join(f"2026-12-03 09:26:25.522 {line}" for line in (
        "127.0.10.101:2181  down", "127.0.10.102:2181  leader  zxid 0x200000000",
        "127.0.10.103:2181  follower  zxid 0x200000000", "quorum: 127.0.10.102:2181 leads"))
    assert unshown([line for line in reversed(status.splitlines()[:3])]
                   + status.splitlines()[3:], status) is None
    assert unshown(status.splitlines()[1:], status)


def test_the_readme_shows_each_script_and_the_vm_commands():
    text = open(README).read()
    for script in os.listdir(os.path.join(REPO, "scripts")):
        if script.endswith(".py") and script != "zkdemo.py":
            assert f"scripts/{script}" in text, f"the README never runs {script}"
    assert "vagrant up zoo1 zoo2 zoo3" in text and "/vagrant/scripts/" in text


# --- the exercises ---------------------------------------------------------------------

def exercise_steps(text):
    """The Exercises section in order: ("sh", commands) and ("text", lines,
    whether the prose before it says the lines appear in watch.py's terminal)."""
    part, steps, end = section(text, "Exercises"), [], 0
    for match in re.finditer(r"```(sh|text)\n(.*?)```\n", part, re.S):
        lines = [line for line in match.group(2).splitlines() if line.strip()]
        if match.group(1) == "sh":
            steps.append(("sh", lines))
        else:
            steps.append(("text", lines, "watch.py's terminal" in part[end:match.start()]))
        end = match.end()
    return steps


def fill_in(command, transcript, reader):
    """What a reader types in place of the README's example values: the
    znode get.py last marked leader, the number of the server status.py last
    said leads, and their own folder of worker logs."""
    command = command.replace("/tmp/zkdemo-$(id -u)", reader.env["ZKDEMO_RUN_DIR"])
    if "/zkdemo/node-0000000101" in command:
        leader = re.findall(r"(/zkdemo/node-\d+) .*\bleader$", transcript, re.M)
        assert leader, f"get.py marked no leader:\n{transcript}"
        command = command.replace("/zkdemo/node-0000000101", leader[-1])
    if m := re.search(r"local-cluster\.py (kill|start) 3\b", command):
        if m.group(1) == "kill":
            leads = re.findall(r"quorum: (\S+):2181 leads", transcript)
            assert leads, f"status.py named no leader:\n{transcript}"
            reader.server = str(TEST_IPS.index(leads[-1]) + 1)
        command = command.replace(m.group(0), f"local-cluster.py {m.group(1)} {reader.server}")
    return command


def twenty_updates_fewer_notifications(watch):
    """Exercise 1 as its prose tells it: fewer than twenty `updated` lines,
    the last with the last value, 20, and the updates each line stands for
    (one, or the count it gives) adding up to the twenty."""
    def updates():
        said = "\n".join(watch.lines)
        lines = said[said.rfind("created /zkdemo/config 0"):].splitlines()[1:]
        found = [re.search(r"updated /zkdemo/config (\d+)(?: \((\d+) updates folded)?", line)
                 for line in lines]
        found = [m for m in found if m]
        return found if found and found[-1].group(1) == "20" else None
    found = wait_until(updates, 30, what="watch.py to show the value 20")
    assert len(found) < 20, [m.group(0) for m in found]
    assert sum(int(m.group(2) or 1) for m in found) == 20, [m.group(0) for m in found]


def test_the_exercises_show_what_they_say(reader):
    """Each exercise, typed as a reader types it, shows what the README says
    it shows: in watch.py's terminal, or in what its commands print."""
    steps = exercise_steps(open(README).read())
    assert [kind for kind, *_ in steps].count("sh") >= 5, "the exercises were not found"
    reader.run("python3 provision/local-cluster.py up", None)
    reader.run("export ZKDEMO_HOSTS=" + ",".join(f"{ip}:2181" for ip in DEMO_IPS), None)
    reader.run(". .venv/bin/activate", None)
    reader.run("/usr/share/zookeeper/bin/zkCli.sh -server 127.0.10.101:2181 create /zkdemo", None)
    watch = OutputProcess([os.path.join(REPO, ".venv/bin/python"),
                           os.path.join(REPO, "scripts/watch.py")], env=reader.env)
    transcript, reader.server = "", None
    try:
        watch.wait_for(lambda m: m.startswith("watching /zkdemo"), 30, what="watch.py to start")
        for number, step in enumerate(steps):
            if step[0] == "text":
                continue
            following = steps[number + 1] if number + 1 < len(steps) else ("sh", [])
            expected = following[1] if following[0] == "text" and not following[2] else None
            watched = following[1] if following[0] == "text" and following[2] else None
            if any("zkCli.sh" in c and " delete " in c for c in step[1]):
                # The leader may leave on its own first (the README says so):
                # the reader lists again and deletes the new leader's znode.
                def deleted():
                    nonlocal transcript
                    transcript += reader.run("python3 scripts/get.py", None)
                    commands = [localize(fill_in(c.partition("  #")[0], transcript, reader))
                                for c in step[1]]
                    result = as_printed(["bash", "-c", "\n".join(commands)], 120, cwd=REPO,
                                        env=reader.env)
                    return not unshown(expected, result.stdout) and result.stdout
                transcript += wait_until(deleted, 90, interval=0.5, what="the leader's znode deleted")
            else:
                output = ""
                for n, command in enumerate(step[1]):
                    output += reader.run(fill_in(command, transcript + output, reader),
                                         expected, output, last=n == len(step[1]) - 1)
                transcript += output
                assert not (expected and unshown(expected, output)), (
                    f"{step[1]}: {unshown(expected, output)}:\n{output}")
            if any("set_async" in command for command in step[1]):
                # Its lines differ run to run, and the README says so: what
                # it says stays the same is checked instead.
                twenty_updates_fewer_notifications(watch)
            elif watched:
                # watch.py's terminal holds the earlier exercises too.
                watched = ["...", *watched]
                try:
                    wait_until(lambda: not unshown(watched, "\n".join(watch.lines)), 30)
                except AssertionError:
                    said = "\n".join(watch.lines)
                    raise AssertionError(f"watch.py: {unshown(watched, said)}:\n{said}") from None
        assert reader.server, "exercise 3 killed no server"
    finally:
        code = watch.stop(signal.SIGINT)
    assert code == 130, "\n".join(watch.lines) + watch.stderr
    assert "Traceback" not in "\n".join(watch.lines) + watch.stderr


# --- the README's links and picture ---------------------------------------------------

def anchor(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_no_readme_command_puts_a_password_on_its_command_line():
    """A password typed as part of a command stays in the shell's history
    and shows in `ps`: the README's commands have the scripts ask for it."""
    for lines, _ in sh_blocks(open(README).read()):
        for line in lines:
            command = line.partition("  #")[0]
            assert "PASSWORD=" not in command and "digest alice:" not in command, line


def test_every_link_in_the_readme_and_docs_leads_somewhere():
    pages = [README] + [os.path.join(REPO, "docs", name)
                        for name in os.listdir(os.path.join(REPO, "docs")) if name.endswith(".md")]
    for page in pages:
        text = open(page).read()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith("http"):
                continue
            path, _, fragment = target.partition("#")
            file = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            assert os.path.exists(file), f"{os.path.relpath(page, REPO)} links to {target}: no such file"
            if fragment:
                headings = re.findall(r"^#+ (.*)$", open(file).read(), re.M)
                assert fragment in {anchor(h) for h in headings}, (
                    f"{os.path.relpath(page, REPO)} links to {target}: no such heading")


def test_the_docs_name_every_test_file():
    tests = open(os.path.join(REPO, "docs", "tests.md")).read()
    for name in os.listdir(os.path.join(REPO, "tests")):
        if name.startswith("test_") and name.endswith(".py"):
            assert f"`{name}`" in tests, f"docs/tests.md never mentions {name}"


def test_the_picture_shows_the_ensemble_as_configured():
    """docs/ensemble.svg names each server with its myid and both its
    addresses, as config/nodes, config/zoo.cfg and the loopback ensemble have them."""
    picture = open(os.path.join(REPO, "docs", "ensemble.svg")).read()
    drawn = re.findall(r'data-server="([^"]*)"', picture)
    config = open(os.path.join(REPO, "config", "zoo.cfg")).read()
    servers = []
    for line in open(os.path.join(REPO, "config", "nodes")):
        if line.strip() and not line.startswith("#"):
            name, myid = line.split()
            address = re.search(rf"^server\.{myid}=([\d.]+):", config, re.M).group(1)
            servers.append(f"{name} {myid} {DEMO_IPS[int(myid) - 1]} {address}")
    assert drawn == servers
    for server in servers:
        name, myid, loopback, address = server.split()
        assert f">{name} <" in picture and f"myid {myid}<" in picture
        assert f">{loopback}:2181<" in picture and f"VM or lab: {address}<" in picture
    assert "docs/ensemble.svg" in open(README).read()


# --- the stale read, in the lab ------------------------------------------------------

@pytest.fixture(scope="module")
def lab_machines():
    from test_lab import lab_up   # here, not above: test_lab imports this module
    yield from lab_up()


def reads(lines):
    """get.py --every's output as (time, listing): each read starts with a
    line about /zkdemo itself and lists its znodes after it."""
    found = []
    for line in lines:
        if not re.match(TIMESTAMP, line):
            continue
        text = line.split(" ", 2)[2]
        if text.startswith("/zkdemo has ") or text.startswith("/zkdemo does not exist"):
            found.append((stamp(line), []))
        elif text.startswith("/zkdemo/") and found:
            found[-1][1].append(text.split()[0])
    return found


def swapped(text, names):
    """Machine names swapped as the README says to (`names`: zooN -> zooM)."""
    return re.sub(r"zoo\d", lambda m: names.get(m.group(0), m.group(0)), text)


def stale_reads(lines, written, path):
    """When get.py's reads, after `path` was written, did not list it."""
    return [t for t, listing in reads(lines) if t > written and path not in listing]


@contextlib.contextmanager
def lab_block(body, names):
    """Run one of the section's ```sh blocks as printed, machine names swapped
    by `names`: readers (the commands run "in a ... terminal") in the
    background. Gives the readers, what the other commands printed, when the
    cut was made, and (when, path) of the znode create.py made; stops the
    readers and heals the lab however the block ends."""
    from test_lab import ENV, LAB_PY, lab
    run = types.SimpleNamespace(readers=[], output="", cut=None, made=None)
    try:
        for line in body.splitlines():
            command, _, comment = line.partition("  #")
            words = swapped(command, names).split()
            assert words[:2] == ["python3", "provision/lab.py"], line
            argv = [sys.executable, LAB_PY, *words[2:]]
            if "terminal" in comment:
                reader = OutputProcess(argv, env=ENV)
                run.readers.append(reader)
                reader.wait_for(lambda m: m.startswith("/zkdemo "), 60, what="a first read")
                continue
            result = as_printed(argv, 120, env=ENV)
            assert result.returncode == 0, result.stdout
            run.output += result.stdout
            if words[2] == "partition":
                run.cut = utc_now()
            if "scripts/create.py" in command:
                found = re.search(r"^(\S+ \S+) created (/zkdemo/node-\d+)$", result.stdout,
                                  re.M)
                run.made = (stamp(found.group(0)), found.group(2))
        yield run
    finally:
        for reader in run.readers:
            reader.stop(signal.SIGINT)
        lab("heal", check=False)


def stale_section():
    text = open(README).read()
    section = text[text.index("### A stale read, seen for real"):]
    return section[:section.index("\n## ")]


def test_the_readmes_stale_read_happens_in_the_lab(lab_machines):
    """The README's stale-read block, run as printed: a plain reader on a
    cut-off follower shows a state the majority has moved past, and a --sync
    reader never does (it waits, then loses the connection)."""
    from test_lab import lab, zk_leader
    body, expected = re.search(r"```sh\n(.*?)```\n\s*```text\n(.*?)```\n",
                               stale_section(), re.S).groups()
    if zk_leader() == "zoo1":   # the README asks for a follower: move leadership away
        lab("halt", "zoo1")
        lab("up", "zoo1")
    assert zk_leader() != "zoo1"
    with lab_block(body, {}) as run:
        assert not unshown(expected.splitlines(), run.output), run.output
        plain, synced = run.readers
        for reader in run.readers:   # both back after the heal, in whatever session
            reader.wait_for(lambda m: m.startswith("reconnected"), 60, what="a reconnect")
    written, path = run.made
    assert stale_reads(plain.lines, written, path), \
        f"no stale read after {path} was written:\n" + "\n".join(plain.lines)
    assert not stale_reads(synced.lines, written, path), "\n".join(synced.lines)
    assert any("no answer: the connection went" in line and stamp(line) > run.cut
               for line in synced.lines), "\n".join(synced.lines)
    assert not any("Traceback" in line for line in plain.lines + synced.lines)


def test_the_readmes_synced_read_through_a_cut_off_leader_is_stale(lab_machines):
    """The README's second block, run as printed with the machine that leads
    in zoo3's place: a --sync reader on the cut-off leader goes on listing
    its old copy after the majority, which elected a new leader, has
    committed a znode; after the heal it is back."""
    from test_lab import zk_leader
    blocks = re.findall(r"```sh\n(.*?)```\n\s*```text\n(.*?)```\n", stale_section(), re.S)
    body, expected = blocks[1]
    leader = zk_leader()
    assert leader, "no machine leads"
    names = {"zoo3": leader, leader: "zoo3"}   # "swap its name with zoo3's"
    with lab_block(body, names) as run:
        assert not unshown(swapped(expected, names).splitlines(), run.output), run.output
        synced, = run.readers
        synced.wait_for(lambda m: m.startswith("reconnected"), 90, what="a reconnect")
    written, path = run.made
    assert stale_reads(synced.lines, written, path), \
        f"no stale synced read after {path} was written at {written}:\n" + \
        "\n".join(synced.lines)
    assert not any("Traceback" in line for line in synced.lines)


@contextlib.contextmanager
def lab_lock_story(body, names):
    """Run one of the README's lock stories for the VMs or the lab, as
    printed, in the lab (`vagrant ssh zooN -c 'CMD'` through lab.py ssh),
    machine names swapped by `names`: the commands "in a ... terminal" in the
    background; a command for "when the ... terminal has written twice" or
    "after two writes" waits for that; `kill -STOP/-CONT N` gets the third
    terminal's pid. Gives (terminals by name, what the other commands
    printed); stops what it started and heals the lab however it ends."""
    from test_lab import ENV, LAB_PY, lab
    terminals, said = {}, [""]
    try:
        for line in body.splitlines():
            command, _, comment = line.partition("  #")
            command = swapped(command.strip(), names)
            if vagrant := re.fullmatch(r"vagrant ssh (zoo\d) -c '(.*)'", command):
                argv = [sys.executable, LAB_PY, "ssh", vagrant.group(1), "--", vagrant.group(2)]
            else:
                assert command.startswith("python3 provision/lab.py "), line
                argv = [sys.executable, LAB_PY, *command.split()[2:]]
            if started := re.search(r"in a (\w+) terminal", comment):
                process = terminals[started.group(1)] = OutputProcess(argv, env=ENV)
                process.wait_for(lambda m: m.startswith("listening on") or
                                 "waiting for the lock" in m, 60,
                                 what=f"the {started.group(1)} terminal's first line")
                if "lock.py" in command and len(terminals) == 2:
                    process.wait_for(lambda m: m.startswith("holding the lock"), 30,
                                     what="the first holder to hold the lock")
                continue
            when = re.search(r"when the (\w+) terminal has written twice", comment)
            waiter = terminals[when.group(1)] if when else \
                terminals["third"] if "after two writes" in comment else None
            if waiter:
                waiter.wait_for(lambda m: m == "write 2: accepted", 90, what="two writes")
            if re.search(r"kill -(STOP|CONT) \d+", command):
                pid = re.search(r"pid (\d+): waiting", terminals["third"].lines[0]).group(1)
                argv[-1] = re.sub(r"\d+$", pid, argv[-1])
            result = as_printed(argv, 120, env=ENV)
            assert result.returncode == 0, result.stdout
            said[0] += result.stdout
        yield terminals, said[0]
    finally:
        for process in terminals.values():
            if process.proc.poll() is None:
                process.stop(signal.SIGINT)
        lab("heal", check=False)


def test_the_readmes_lock_holder_cut_off_in_the_lab(lab_machines):
    """The README's lab lock story, run as printed: a holder on zoo1 cut off
    mid-write, its lock taken by the holder on zoo2; after the heal the
    write the cut held reaches the store, which refuses it for its lower
    token, and the holder says it lost the lock."""
    from test_lab import zk_leader
    text = subsection(open(README).read(), "A lock holder cut off")
    body = re.search(r"```sh\n(.*?)```\n", text, re.S).group(1)
    third, store = re.findall(r"```text\n(.*?)```\n", text, re.S)
    names = {"zoo1": "zoo2", "zoo2": "zoo1"} if zk_leader() == "zoo1" else {}   # as it says
    with lab_lock_story(body, names) as (terminals, output):
        cut_off = terminals["third"]
        assert cut_off.wait(120) == 1, output + "\n".join(cut_off.lines) + cut_off.stderr
        assert not unshown(third.splitlines(), "\n".join(cut_off.lines)), \
            "\n".join(cut_off.lines)
        stored = terminals["second"]
        wait_until(lambda: any(m.startswith("REJECTED") for m in stored.messages()), 10,
                   what="the store's REJECTED line")
        assert not unshown(store.splitlines(), "\n".join(stored.lines)), "\n".join(stored.lines)
        # The refused write is the one the cut held: sent before the new holder
        # took the lock, answered after its writes.
        newer = terminals["fourth"]
        took_over = stamp(next(l for l in newer.lines if " holding the lock" in l))
        refused = next(l for l in stored.lines if " REJECTED " in l)
        late = re.search(r"write (\d+)$", refused).group(1)
        before = [l for l in cut_off.lines if re.search(r" write \d+: accepted$", l)]
        assert int(late) == len(before) + 1 and stamp(before[-1]) < took_over < stamp(refused)
        assert not any("Traceback" in line for p in terminals.values() for line in p.lines)


KAZOO_STATE_WORDS = ("connection suspended", "session lost", "reconnected")


def test_the_readmes_lock_story_for_the_vms_runs_in_the_lab(lab_machines):
    """The lock section's VM block, in the lab as the README says to run VM
    commands: the store on zoo3, holders on zoo1 and zoo2, the first frozen
    from inside its machine; its third write is refused and it lost the lock."""
    text = subsection(open(README).read(), LOCK_STORY)
    body, = [b for b in re.findall(r"```sh\n(.*?)```\n", text, re.S) if "vagrant ssh" in b]
    with lab_lock_story(body, {}) as (terminals, output):
        frozen = terminals["third"]
        assert frozen.wait(120) == 1, output + "\n".join(frozen.lines) + frozen.stderr
        # kazoo's own words on the connection may come at any point after the thaw
        said = [m for m in frozen.messages() if not m.startswith(KAZOO_STATE_WORDS)]
        assert said[-2].startswith("write 3: REJECTED: the store has seen fencing token"), \
            "\n".join(frozen.messages())
        assert said[-1] == "lost the lock: it has passed to a newer holder", said
        assert not any("Traceback" in line for p in terminals.values() for line in p.lines)
