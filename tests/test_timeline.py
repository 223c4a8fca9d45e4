"""provision/timeline.py: the page that shows what happened.

The data the page is drawn from is checked twice: from planted logs, where
the answer is known to the millisecond (an overlap of two leaders, a pause, a
cut), and from a real run on a scratch ensemble, where a server is killed
and another paused while electors and watch.py run. The real run's page is
drawn to a PNG with headless Chromium, as the README's picture is.
"""

import datetime
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from conftest import REPO, require, run_script, script_command, wait_until
import timeline

TIMELINE = os.path.join(REPO, "provision", "timeline.py")
T0 = datetime.datetime(2026, 11, 30, 6, 0, 0)


def at(seconds, text):
    when = T0 + datetime.timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " " + text + "\n"


def plant(folder, files):
    for name, lines in files.items():
        with open(os.path.join(folder, name), "w") as f:
            f.writelines(at(*line) for line in lines)


def test_a_kill_ends_where_up_brought_the_server_back(tmp_path):
    """The README brings killed servers back with `local-cluster.py up`, which
    names no server: the band ends there, not at a later `start`."""
    events = [(T0 + datetime.timedelta(seconds=s), at(s, text).strip()) for s, text in [
        (2, "begin kill zoo2"), (2.1, "end kill zoo2"), (18, "begin up"), (18.9, "end up"),
        (30, "begin kill zoo3"), (30.1, "end kill zoo3"), (35, "begin start zoo3"),
        (35.8, "end start zoo3")]]
    bands = timeline.fault_bands(events, T0 + datetime.timedelta(seconds=60))
    assert [(b.label, (b.stop - b.start).total_seconds()) for b in bands] == [
        ("kill zoo2", 16.9), ("kill zoo3", 5.8)]


def test_the_legend_names_only_what_is_drawn_and_fault_labels_never_overlap(tmp_path):
    """Four faults a second apart: three labels fit, the fourth is left out
    (its band still says what it was), and each shades only the lanes of the
    servers it hit; no server was cut off, so the legend does not offer "cut off"."""
    plant(tmp_path, {
        "modes.log": [(0, "zoo1 leader"), (0, "zoo2 follower"), (0, "zoo3 follower"),
                      (30, "zoo1 leader")],
        "events.log": [(10, "begin partition zoo2 zoo3"), (10.05, "end partition zoo2 zoo3"),
                       (11, "begin kill zoo3"), (11.1, "end kill zoo3"),
                       (12, "begin pause zoo2"), (12.1, "end pause zoo2"),
                       (13, "begin halt zoo3"), (13.1, "end halt zoo3"),
                       (20, "begin heal"), (20.1, "end heal"), (21, "begin start zoo3"),
                       (21.5, "end start zoo3"), (22, "begin resume zoo2"),
                       (22.1, "end resume zoo2")]})
    page = timeline.draw(timeline.gather(str(tmp_path), [], str(tmp_path)), "planted")
    assert page.count('<g class="fault">') == 4
    labels = re.findall(r'<text class="fault-label" x="([\d.]+)" y="(\d+)"[^>]*>([^<]*)<', page)
    assert [text for _, _, text in labels] == ["cut the zoo2-zoo3 link", "kill zoo3",
                                               "pause zoo2"]
    spans = [(int(y), float(x), float(x) + timeline.LABEL_PX * len(text)) for x, y, text in labels]
    for a, b in zip(spans, spans[1:]):
        assert a[0] != b[0] or a[2] <= b[1], labels
    # No fault hit zoo1: its lane is not shaded, though all three overlap in time.
    zoo1 = int(re.search(r'<rect class="state" data-state="\w+" x="[\d.]+" y="(\d+)"', page)[1])
    for group in re.findall(r'<g class="fault">(.*?)</g>', page):
        for y, tall in re.findall(r'<rect x="[\d.]+" y="(\d+)" width="[\d.]+" height="(\d+)"',
                                  group):
            assert int(y) + int(tall) <= zoo1 or int(y) >= zoo1 + 20, group
    legend = page[page.index('class="legend"'):]
    assert "cut off" not in legend and "leading" in legend and "following" in legend


def test_a_timeline_draws_one_run_only(tmp_path):
    """The workers' folder is shared by every run: a term an earlier run's
    worker wrote is not this run's, and a worker that wrote nothing in this
    run gets no lane. A log given by name that holds no line of the recorded
    run is one line, not an empty page."""
    plant(tmp_path, {
        "modes.log": [(100, "zoo1 leader"), (100, "zoo2 follower"), (100, "zoo3 follower"),
                      (130, "zoo1 leader")],
        "worker-1.log": [(10, "staying 5.0 s"), (11, "became leader"), (12, "staying 9.0 s"),
                         (101, "staying 20.0 s"), (102, "following /zkdemo/node-0000000007")],
        "worker-2.log": [(20, "staying 5.0 s"), (21, "became leader")],
        "watch.log": [(30, "watching /zkdemo; Ctrl-C to stop")]})
    data = timeline.gather(str(tmp_path), [], str(tmp_path))
    assert list(data["electors"]) == ["worker-1"]
    assert data["electors"]["worker-1"][0] == []   # its term at 11 s was an earlier run's
    result = subprocess.run([sys.executable, TIMELINE, "draw", str(tmp_path / "watch.log")],
                            env=dict(os.environ, ZKDEMO_STATE_DIR=str(tmp_path),
                                     ZKDEMO_RUN_DIR=str(tmp_path)),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"timeline.py: {tmp_path}/watch.log has no line between ")
    assert len(result.stderr.splitlines()) == 1


def test_planted_faults_and_an_overlap_are_drawn_as_they_happened(tmp_path):
    plant(tmp_path, {
        "modes.log": [(0, "zoo1 leader"), (0, "zoo2 follower"), (0, "zoo3 follower"),
                      (2.5, "zoo1 paused"), (3, "zoo2 leader"), (6, "zoo1 follower"),
                      (8, "zoo3 not serving"), (12, "zoo3 follower"), (20, "zoo1 follower")],
        "events.log": [(2, "begin pause zoo1"), (2.01, "end pause zoo1"),
                       (5.9, "begin resume zoo1"), (5.95, "end resume zoo1"),
                       (7, "begin partition zoo3"), (7.1, "end partition zoo3"),
                       (11, "begin heal"), (11.1, "end heal"),
                       (14, "begin partition zoo1 zoo3"), (14.1, "end partition zoo1 zoo3"),
                       (16, "begin kill zoo2"), (16.2, "end kill zoo2"),
                       # a command that failed draws nothing
                       (17, "begin partition zoo1 zoo1"), (17, "failed partition zoo1 zoo1")],
        # worker-1 leads 1-4.25 s; worker-2 from 4.0 s: 250 ms of two leaders.
        "worker-1.log": [(0.5, "staying 30.0 s"), (1, "became leader"),
                         (4.25, "no longer leader (connection lost)")],
        "worker-2.log": [(0.5, "staying 30.0 s"), (0.6, "following /zkdemo/node-1"),
                         (4, "became leader"), (9, "time is up"),
                         (9, "no longer leader (time is up)"),
                         (10, "staying 5.0 s"), (10.5, "became leader"),
                         # killed while leading: the next run closes the term
                         (15, "staying 5.0 s")],
        "watch.log": [(1, "created /zkdemo/node-1"), (4.1, "deleted /zkdemo/node-1")],
    })
    data = timeline.gather(str(tmp_path), [str(tmp_path / "watch.log")], str(tmp_path))
    bands = [(f.label, round((f.start - T0).total_seconds(), 2),
              round((f.stop - T0).total_seconds(), 2)) for f in data["faults"]]
    assert bands == [("pause zoo1", 2, 5.95), ("cut zoo3 off", 7, 11.1),
                     ("cut the zoo1-zoo3 link", 14, 20), ("kill zoo2", 16, 20)]
    states = {name: [(s, round((a - T0).total_seconds(), 1)) for a, _, s, _ in lane]
              for name, lane in data["servers"].items()}
    assert ("hanging", 2.5) in states["zoo1"]       # no answer during the pause
    assert ("cut off", 8) in states["zoo3"]         # not serving while cut off
    assert ("electing", 8) not in states["zoo3"]
    assert states["zoo2"][:2] == [("following", 0), ("leading", 3)]
    terms = data["electors"]["worker-2"][0]
    assert [(t.start - T0).total_seconds() for t in terms] == [4, 10.5]
    assert terms[0].why == "time is up"
    assert terms[1].why == "its process ended without stepping down"
    assert set(data["others"]) == {"watch"}
    (first, second, start, end), = data["overlaps"]
    assert (first.process, second.process) == ("worker-1", "worker-2")
    assert (end - start).total_seconds() == 0.25
    page = timeline.draw(data, "planted")
    assert page.count('class="overlap"') == 2
    assert "overlap 250 ms" in page and "1 overlap of two leaders" in page
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # offline
    # Without the overlap, the verdict says so.
    plant(tmp_path, {"worker-1.log": [(1, "became leader"), (3.9, "no longer leader (done)")]})
    page = timeline.draw(timeline.gather(str(tmp_path), [], str(tmp_path)), "planted")
    assert 'class="overlap"' not in page and "No two electors led at once." in page


def test_a_recorded_failure_run_is_drawn(scratch_ensemble, tmp_path):
    """Electors and watch.py run while the leader is killed and restarted
    and a follower paused and resumed; the page shows each of them."""
    scratch_ensemble.up()
    scratch_ensemble.wait_serving()
    env = dict(os.environ, ZKDEMO_STATE_DIR=scratch_ensemble.state_dir,
               ZKDEMO_RUN_DIR=str(tmp_path), ZKDEMO_HOSTS=scratch_ensemble.hosts)
    with open(os.path.join(scratch_ensemble.state_dir, "events.log"), "w"):
        pass   # only this run's faults
    started = []
    try:
        started.append(subprocess.Popen([sys.executable, TIMELINE, "record",
                                         str(tmp_path / "watch.log")],
                                        env=env, stdout=subprocess.PIPE, text=True,
                                        stdin=subprocess.DEVNULL))
        (tmp_path / "watch.log").touch()
        modes_log = os.path.join(scratch_ensemble.state_dir, "modes.log")
        wait_until(lambda: os.path.exists(modes_log) and open(modes_log).read().count("\n") >= 3,
                   30, what="the recorder's first modes")
        with open(tmp_path / "watch.log", "w") as out:
            started.append(subprocess.Popen(script_command("watch.py"), env=env, stdout=out,
                                            stdin=subprocess.DEVNULL))
        result = run_script("create-start.py", "2", env=env)
        assert result.returncode == 0, result.stderr
        logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
        wait_until(lambda: any("became leader" in p.read_text() for p in logs if p.exists()),
                   30, what="an elector to lead")
        leader = scratch_ensemble.leader()
        scratch_ensemble.run("kill", leader)
        wait_until(lambda: scratch_ensemble.leader() not in (None, leader), 30,
                   what="another server to lead")
        wait_until(lambda: f"{leader} down" in open(modes_log).read(), 30,
                   what="the recorder to see the kill")
        scratch_ensemble.run("start", leader)
        scratch_ensemble.wait_serving()
        follower = next(n for n, m in scratch_ensemble.modes().items() if m == "follower")
        scratch_ensemble.run("pause", follower)
        wait_until(lambda: f"{follower} paused" in open(modes_log).read(), 30,
                   what="the recorder to see the pause")
        scratch_ensemble.run("resume", follower)
        scratch_ensemble.wait_serving()
        wait_until(lambda: f"{follower} follower" in open(modes_log).read().split(
            f"{follower} paused")[-1], 30, what="the recorder to see the follower back")
        recorder = started[0]
        recorder.send_signal(signal.SIGINT)   # Ctrl-C: it stops and draws
        said = recorder.communicate(timeout=60)[0]
        assert recorder.returncode == 0, said
    finally:
        run_script("create-stop.py", env=env)
        for process in started:
            if process.poll() is None:
                process.terminate()
                process.wait(30)
    page_path = os.path.join(scratch_ensemble.state_dir, "timeline.html")
    assert f"timeline: {os.path.relpath(page_path)}" in said
    data = timeline.gather(scratch_ensemble.state_dir, [str(tmp_path / "watch.log")],
                           str(tmp_path))
    labels = [band[2] for band in data["faults"]]
    assert labels == [f"kill {leader}", f"pause {follower}"], labels
    kill, pause = data["faults"]
    assert any(state == "down" and kill[0] <= start <= kill[1]
               for start, _, state, _ in data["servers"][leader])
    assert any(state == "hanging" and pause[0] <= start <= pause[1]
               for start, _, state, _ in data["servers"][follower])
    for lane in data["servers"].values():   # all serving again at the end
        assert lane[-1][2] in ("leading", "following"), lane
    assert any(terms for terms, _ in data["electors"].values())
    assert data["overlaps"] == []
    assert len(data["others"]["watch"]) >= 2
    page = open(page_path).read()
    assert f">kill {leader}<" in page and "No two electors led at once." in page
    # The picture a learner looks at, drawn as the README's is.
    require("chromium (for the timeline's PNG)", shutil.which("chromium"))
    png = tmp_path / "timeline.png"
    drawn = subprocess.run([sys.executable, TIMELINE, "draw", str(tmp_path / "watch.log"),
                            "--png", str(png), "--out", str(tmp_path / "again.html")],
                           env=env, capture_output=True, text=True, timeout=180)
    assert drawn.returncode == 0, drawn.stderr
    assert drawn.stdout.splitlines()[-1] == f"timeline: {timeline.shown(str(png))}"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_bad_input_gets_one_line(tmp_path):
    env = dict(os.environ, ZKDEMO_STATE_DIR=str(tmp_path))
    for args, said in ((["bogus"], "invalid choice: 'bogus'"),
                       (["draw"], f"cannot read {tmp_path}/modes.log"),
                       (["draw", str(tmp_path / "no.log")], f"no such log: {tmp_path}/no.log")):
        run = subprocess.run([sys.executable, TIMELINE, *args], env=env, capture_output=True,
                             text=True, timeout=60)
        assert run.returncode == 2 and run.stderr.count("\n") == 1 and said in run.stderr, run


def test_workers_logs_are_read_only_from_a_folder_of_the_users_alone(tmp_path):
    """/tmp is shared: the workers' logs in a folder others may write to are
    left out, and so is a link where a worker's log goes."""
    state, open_to_all, private = tmp_path / "state", tmp_path / "open", tmp_path / "private"
    for folder in (state, open_to_all, private):
        folder.mkdir(mode=0o700)
    os.chmod(open_to_all, 0o777)
    plant(state, {"modes.log": [(0, "zoo1 leader"), (0, "zoo2 follower"), (0, "zoo3 follower"),
                                (5, "zoo1 leader")]})
    led = [(1, "staying 30.0 s"), (2, "became leader")]
    plant(open_to_all, {"worker-1.log": led})
    plant(private, {"worker-1.log": led})
    plant(tmp_path, {"elsewhere.log": led})
    (private / "worker-2.log").symlink_to(tmp_path / "elsewhere.log")

    def drawn(run_dir):
        env = dict(os.environ, ZKDEMO_STATE_DIR=str(state), ZKDEMO_RUN_DIR=str(run_dir))
        run = subprocess.run([sys.executable, TIMELINE, "draw"], env=env, capture_output=True,
                             text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        return run.stderr, (state / "timeline.html").read_text()

    said, page = drawn(open_to_all)
    assert said == (f"timeline: the workers' logs in {open_to_all} are left out: that is not "
                    "a folder of yours alone\n")
    assert "worker-1" not in page
    said, page = drawn(private)
    assert said == "" and "worker-1" in page and "worker-2" not in page


def lock_telling(fencing):
    """The lock story's logs, planted: the first holder writes twice, is
    frozen at 2.5 s, its session expires, the second holder takes the lock at
    13 s and writes twice, and the first, let go at 15.2 s, writes late."""
    token = ("0x10000000c", "0x10000000e") if fencing else ("-", "-")
    told = "fencing token %s (its czxid)" if fencing else "no fencing token (--no-fencing)%.0s"
    first = [at(0, "127.0.0.1 pid 8116: waiting for the lock /zkdemo-locks/demo"),
             at(0.02, "holding the lock: /zkdemo-locks/demo/a__lock__0000000002, " +
                told % token[0]),
             at(1, "write 1: accepted"), at(2, "write 2: accepted")]
    second = [at(0.1, "127.0.0.1 pid 8122: waiting for the lock /zkdemo-locks/demo"),
              at(13, "holding the lock: /zkdemo-locks/demo/b__lock__0000000003, " +
                 told % token[1]),
              at(14, "write 1: accepted"), at(15, "write 2: accepted"),
              at(16, "write 3: accepted"), at(23, "time is up: letting go of the lock")]
    if fencing:
        store = [at(1, "accepted  token 0x10000000c (highest so far): 127.0.0.1 pid 8116 write 1"),
                 at(2, "accepted  token 0x10000000c (highest so far): 127.0.0.1 pid 8116 write 2"),
                 at(14, "accepted  token 0x10000000e (highest so far): 127.0.0.1 pid 8122 write 1"),
                 at(15, "accepted  token 0x10000000e (highest so far): 127.0.0.1 pid 8122 write 2"),
                 at(15.2, "REJECTED  token 0x10000000c < highest 0x10000000e: 127.0.0.1 pid "
                    "8116 write 3"),
                 at(16, "accepted  token 0x10000000e (highest so far): 127.0.0.1 pid 8122 write 3")]
        first += [at(15.2, "write 3: REJECTED: the store has seen fencing token 0x10000000e, "
                     "newer than ours (0x10000000c)"),
                  at(15.21, "lost the lock: it has passed to a newer holder")]
    else:
        store = [at(s, f"accepted  without a token (nothing to check): 127.0.0.1 pid {pid} "
                       f"write {n}") for s, pid, n in ((1, 8116, 1), (2, 8116, 2), (14, 8122, 1),
                                                       (15, 8122, 2), (15.2, 8116, 3),
                                                       (16, 8122, 3))]
        first += [at(15.2, "write 3: accepted"),
                  at(15.21, "lost the lock: ZooKeeper expired the session, and deleted the "
                            "lock znode")]
    holders = {"first holder (pid 8116)": [line.rstrip("\n") for line in first],
               "second holder (pid 8122)": [line.rstrip("\n") for line in second]}
    frozen = (T0 + datetime.timedelta(seconds=2.5), T0 + datetime.timedelta(seconds=15.1))
    return timeline.lock_story(holders, [line.rstrip("\n") for line in store]), frozen


@pytest.mark.parametrize("fencing", [False, True])
def test_the_lock_story_marks_the_late_write_accepted_without_tokens_refused_with(fencing):
    story, _ = lock_telling(fencing)
    terms = [(t.holder.split()[0], t.token) for t in story["terms"]]
    assert terms == ([("first", "0x10000000c"), ("second", "0x10000000e")] if fencing
                     else [("first", "-"), ("second", "-")])
    assert story["terms"][0].end == T0 + datetime.timedelta(seconds=15.21)
    assert story["terms"][0].why.startswith("lost the lock")
    verdicts = [(m.holder.split()[0], m.verdict) for m in story["marks"]]
    late = "rejected" if fencing else "late"
    assert verdicts == [("first", "accepted"), ("first", "accepted"), ("second", "accepted"),
                        ("second", "accepted"), ("first", late), ("second", "accepted")]


def test_the_committed_lock_picture_shows_one_late_write_each_way():
    """docs/lock-timeline.svg, drawn from a real telling by test_lock.py
    (ZKDEMO_DRAW_LOCK): the panel without tokens has the late write accepted,
    the one with tokens has it refused, and both show the freeze."""
    with open(os.path.join(REPO, "docs", "lock-timeline.svg")) as f:
        svg = f.read()
    panels = re.findall(r'<g class="panel" data-title="([^"]*)">(.*?)</g>', svg, re.S)
    assert [title for title, _ in panels] == ["without fencing tokens (--no-fencing)",
                                              "with fencing tokens"]
    for (title, body), late in zip(panels, ("late", "rejected")):
        verdicts = re.findall(r'data-verdict="(\w+)"', body)
        assert verdicts.count(late) == 1 and set(verdicts) == {"accepted", late}, (title, verdicts)
        assert body.count('class="frozen"') == 1
        assert re.findall(r'class="term" data-holder="(\w+)', body) == ["first", "second"]
    assert_one_scale(svg)


def assert_one_scale(svg):
    """The panels are drawn to one scale: each one's "5 s" and "10 s" marks
    stand at the same x, so that a reader can compare them second for second."""
    panels = re.findall(r'<g class="panel"[^>]*>(.*?)</g>', svg, re.S)
    ticks = [dict((label, float(x)) for x, label in
                  re.findall(r'<text x="([\d.]+)"[^>]*>(\d+) s</text>', body)) for body in panels]
    assert len(ticks) == 2 and all("10" in t for t in ticks), ticks
    assert ticks[0]["5"] == ticks[1]["5"] and ticks[0]["10"] == ticks[1]["10"], ticks


def test_a_drawn_lock_story_has_its_marks_and_legend(tmp_path):
    panels = [(title, *lock_telling(fencing)) for title, fencing in (
        ("without fencing tokens (--no-fencing)", False), ("with fencing tokens", True))]
    svg = timeline.draw_lock(panels)
    assert svg.count('data-verdict="late"') == 1 and svg.count('data-verdict="rejected"') == 1
    assert "REJECTED 0x10000000c &lt; 0x10000000e" in svg
    assert_one_scale(svg)
    if os.environ.get("ZKDEMO_DRAW_LOCK"):
        with open(os.environ["ZKDEMO_DRAW_LOCK"], "w") as f:
            f.write(svg)
