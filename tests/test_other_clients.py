"""Other clients in the room: a learner's own znodes under /zkdemo, /zkdemo
deleted or locked by someone else, as a reader with zkCli.sh open beside the
scripts makes them. The scripts must keep to their own znodes and say clearly
what they cannot do."""

import contextlib
import signal
import socket

import pytest
from kazoo.client import KazooClient
from kazoo.handlers.threading import SequentialThreadingHandler
from kazoo.security import ACL, OPEN_ACL_UNSAFE, Id, Permissions

from conftest import held, run_script, wait_until
from test_scripts import line_time

BINARY = b"\x00\xff\x01"
# A learner's znodes, made before any elector: one sequential znode of theirs
# has a lower number than every elector's, two more look almost like electors.
FOREIGN = {"foo": b"", "foo/child": b"x", "node-1": BINARY, "node-abc": b"learner",
           "node-00000000001": b"eleven digits"}


def messages(output):
    return [line.split(" ", 2)[2] for line in output.splitlines()]


def make_foreign(zk):
    zk.ensure_path("/zkdemo")
    for name, data in FOREIGN.items():
        zk.create(f"/zkdemo/{name}", data)
    return zk.create("/zkdemo/job-", b"a\nb", sequence=True).rsplit("/", 1)[1]


def foreign_state(zk):
    names = [n for n in FOREIGN if "/" not in n]
    return {n: zk.get(f"/zkdemo/{n}")[0] for n in names}


def test_foreign_znodes_never_take_part_in_the_election(ensemble, zk, scripts):
    watcher = scripts("watch.py", hosts=ensemble.hosts)
    watcher.wait_for(lambda m: m.startswith("/zkdemo does not exist yet"))
    job = make_foreign(zk)
    before = foreign_state(zk)

    first = scripts("create.py", "30", hosts=ensemble.hosts)
    first.wait_for(lambda m: m == "became leader", what="the first elector to lead")
    mine = first.wait_for(lambda m: m.startswith("created /zkdemo/node-")).split()[1]
    second = scripts("create.py", "30", hosts=ensemble.hosts)
    assert second.wait_for(lambda m: m.startswith("following ")) == f"following {mine}"

    listing = run_script("get.py", "--sync", hosts=ensemble.hosts)
    assert listing.returncode == 0, listing.stderr
    lines = messages(listing.stdout)
    assert "/zkdemo/foo (no data)  (1 child)  (not in the election)" in lines
    assert "/zkdemo/node-1 (3 bytes, not text: 00 ff 01)  (not in the election)" in lines
    assert "/zkdemo/node-abc learner  (not in the election)" in lines
    assert "/zkdemo/node-00000000001 eleven digits  (not in the election)" in lines
    assert f"/zkdemo/{job} a\\nb  (not in the election)" in lines
    leaders = [line for line in lines if line.endswith("  leader")]
    assert len(leaders) == 1 and leaders[0].startswith(mine + " {"), lines

    first.stop()
    second.wait_for(lambda m: m == "became leader", what="the second elector to take over")
    assert line_time(second, "became leader") >= line_time(first, "no longer leader (exiting)")
    assert second.stop() == 143

    # Nobody touched the learner's znodes, and watch.py showed them as they are.
    assert foreign_state(zk) == before
    for line in ("created /zkdemo/foo (no data)", "created /zkdemo/node-1 (3 bytes, not text: "
                 "00 ff 01)", f"created /zkdemo/{job} a\\nb"):
        watcher.wait_for(lambda m: m == line, what=line)
    assert watcher.stop(signal.SIGINT) == 130
    assert watcher.stderr == ""


def test_an_elector_whose_znode_another_client_deletes_knows_it_at_once(ensemble, zk, scripts):
    """zkCli.sh's `delete` on the leader's znode: the next in line takes over,
    and the old leader must not go on believing it leads."""
    first = scripts("create.py", "60", hosts=ensemble.hosts)
    first.wait_for(lambda m: m == "became leader", what="the first elector to lead")
    mine = first.wait_for(lambda m: m.startswith("created /zkdemo/node-")).split()[1]
    second = scripts("create.py", "60", hosts=ensemble.hosts)
    theirs = second.wait_for(lambda m: m.startswith("created /zkdemo/node-")).split()[1]
    second.wait_for(lambda m: m == f"following {mine}")

    zk.set(mine, b"a learner's data")   # a change first: the watch on it must stay
    zk.delete(mine)
    first.wait_for(lambda m: m == f"no longer leader (another client deleted {mine})",
                   what="the old leader to step down")
    second.wait_for(lambda m: m == "became leader", what="the next in line to take over")
    gap = line_time(first, "no longer leader (another client deleted " + mine + ")") - \
        line_time(second, "became leader")
    assert gap.total_seconds() < 1.0, gap   # not a lease (seconds) later
    again = first.wait_for(lambda m: m.startswith("created /zkdemo/node-") and mine not in m,
                           what="the old leader to join again").split()[1]
    assert again > theirs
    first.wait_for(lambda m: m == f"following {theirs}")

    zk.delete(again)   # a follower's znode: it joins again, the leader stays
    first.wait_for(lambda m: m.count("created /zkdemo/node-") and again not in m
                   and mine not in m, what="the follower to join once more")
    first.wait_for(lambda m: m == f"following {theirs}" and first.count(
        lambda m: m == f"following {theirs}") == 2, what="the follower to follow again")
    assert first.count(lambda m: m == "became leader") == 1
    assert second.count(lambda m: m.startswith("no longer leader")) == 0
    assert first.stop() == 143 and second.stop() == 143
    assert first.stderr == second.stderr == ""
    assert [line for line in first.messages() if "woken" in line] == []


def test_watch_survives_zkdemo_deleted_and_made_again(ensemble, zk, scripts):
    zk.ensure_path("/zkdemo/foo/child")
    zk.create("/zkdemo/bar", b"1")
    watcher = scripts("watch.py", hosts=ensemble.hosts)
    watcher.wait_for(lambda m: m.startswith("present /zkdemo/bar"))

    def wait_for_count(line, count, what):
        wait_until(lambda: watcher.proc.poll() is None and watcher.count(
            lambda m: m.startswith(line)) >= count, 30, what=what)

    for round_ in range(1, 4):
        zk.delete("/zkdemo", recursive=True)   # as zkCli.sh's deleteall does
        wait_for_count("/zkdemo is gone; waiting for it to be created", round_,
                       f"round {round_}: the news that /zkdemo is gone")
        made = [zk.create("/zkdemo/node-", b"%d" % i, sequence=True, makepath=True)
                for i in range(20)]
        zk.create("/zkdemo/foo", b"back")
        zk.create("/zkdemo/bar", b"1")
        for path in made:   # every one, none folded away
            watcher.wait_for(lambda m: m.startswith(f"created {path} "), what=path)
        wait_for_count("created /zkdemo/bar 1", round_, f"round {round_}: /zkdemo/bar again")
    lines = watcher.messages()
    # Each round: what it knew went, one by one, then /zkdemo, then it came back.
    assert lines.count("/zkdemo is gone; waiting for it to be created") == 3
    assert lines.count("created /zkdemo") == 3
    assert lines.count("deleted /zkdemo/bar") == 3
    assert lines.count("deleted /zkdemo/foo") == 3
    assert lines.count("created /zkdemo/foo back") == 3
    assert not any("folded" in line for line in lines), lines
    assert watcher.stop(signal.SIGINT) == 130
    assert watcher.stderr == ""


def test_watch_sees_zkdemo_deleted_and_made_again_between_two_reads(ensemble, zk, scripts):
    """Gone and back before watch.py could look: the new /zkdemo is told
    from the old one by the zxid that created it."""
    zk.ensure_path("/zkdemo")
    zk.create("/zkdemo/bar", b"1")
    watcher = scripts("watch.py", hosts=ensemble.hosts)
    watcher.wait_for(lambda m: m == "present /zkdemo/bar 1")
    transaction = zk.transaction()   # one step, as far as any reader can tell
    transaction.delete("/zkdemo/bar")
    transaction.delete("/zkdemo")
    transaction.create("/zkdemo")
    transaction.create("/zkdemo/bar", b"2")
    assert all(r is True or isinstance(r, str) for r in transaction.commit())
    watcher.wait_for(lambda m: m == "created /zkdemo/bar 2")
    assert watcher.messages()[-4:] == ["deleted /zkdemo/bar", "/zkdemo is gone",
                                       "created /zkdemo", "created /zkdemo/bar 2"]
    assert watcher.stop(signal.SIGINT) == 130


def test_watch_waits_for_a_zkdemo_that_is_not_there_yet(ensemble, zk, scripts):
    watcher = scripts("watch.py", hosts=ensemble.hosts)
    watcher.wait_for(lambda m: m == "/zkdemo does not exist yet; waiting for it to be created")
    assert zk.exists("/zkdemo") is None   # a watcher makes nothing
    elector = scripts("create.py", "20", hosts=ensemble.hosts)
    path = elector.wait_for(lambda m: m.startswith("created /zkdemo/node-")).split()[1]
    watcher.wait_for(lambda m: m == "created /zkdemo")
    watcher.wait_for(lambda m: m.startswith(f"created {path} {{"))
    assert elector.stop() == 143
    watcher.wait_for(lambda m: m == f"deleted {path}")
    assert watcher.stop(signal.SIGINT) == 130


def test_a_zkdemo_with_data_of_its_own_is_used_as_it_is(ensemble, zk, scripts):
    zk.create("/zkdemo", b"a learner was here")
    watcher = scripts("watch.py", hosts=ensemble.hosts)
    watcher.wait_for(lambda m: m.startswith("watching /zkdemo"))
    result = run_script("create.py", "0.5", hosts=ensemble.hosts)
    assert result.returncode == 0, result.stderr
    assert "became leader" in messages(result.stdout)
    watcher.wait_for(lambda m: m.startswith("deleted /zkdemo/node-"))
    assert zk.get("/zkdemo")[0] == b"a learner was here"
    assert watcher.stop(signal.SIGINT) == 130


def test_an_ephemeral_zkdemo_is_one_line(ensemble, zk):
    zk.create("/zkdemo", ephemeral=True)
    result = run_script("create.py", "1", hosts=ensemble.hosts)
    assert result.returncode == 1
    assert result.stderr == ("create.py: /zkdemo is an ephemeral znode (another client's "
                             "session owns it), and ephemeral znodes cannot have children: "
                             "delete it, or end that session\n")
    assert zk.get_children("/zkdemo") == []


class FromAddress(SequentialThreadingHandler):
    """kazoo connecting from another loopback address: a second machine to IP ACLs."""

    def __init__(self, source):
        super().__init__()
        self.source = source

    def create_connection(self, address, timeout=None, **kwargs):
        return socket.create_connection(address, timeout, source_address=(self.source, 0))


@pytest.fixture
def other_machine(ensemble):
    client = KazooClient(hosts=ensemble.hosts, handler=FromAddress("127.0.0.9"))
    client.start(timeout=15)
    yield client
    if client.exists("/zkdemo"):
        client.set_acls("/zkdemo", OPEN_ACL_UNSAFE)   # whatever the test left
    client.stop()
    client.close()


UNDO = "acl-lockdown.py --undo --recursive, or in zkCli.sh `setAcl -R /zkdemo world:anyone:cdrwa`"
LOCKS = {
    # Anyone may read /zkdemo; only 127.0.0.9 may make znodes in it.
    "read-only": ([ACL(Permissions.READ, Id("world", "anyone")),
                   ACL(Permissions.ALL, Id("ip", "127.0.0.9"))],
                  {"create.py": "create a znode under /zkdemo for a client at 127.0.0.1"}),
    # Only 127.0.0.9 may do anything, even read the ACL.
    "closed": ([ACL(Permissions.ALL, Id("ip", "127.0.0.9"))],
               {"create.py": "create a znode under /zkdemo for a client at 127.0.0.1",
                "get.py": "list /zkdemo",
                "watch.py": "list /zkdemo"}),
}


@pytest.mark.parametrize("lock", LOCKS)
def test_a_zkdemo_locked_by_another_client_is_one_line_naming_its_acl(
        ensemble, zk, other_machine, scripts, lock):
    acl, refusals = LOCKS[lock]
    other_machine.create("/zkdemo/theirs", b"keep", makepath=True)
    other_machine.set_acls("/zkdemo", acl)
    for script, doing in refusals.items():
        args = ["1"] if script == "create.py" else []
        result = run_script(script, *args, hosts=ensemble.hosts)
        assert result.returncode == 1, result.stdout + result.stderr
        if lock == "read-only":
            expected = (f"{script}: ZooKeeper refused to {doing} (NoAuth): the ACL of "
                        "/zkdemo is world:anyone:r, ip:127.0.0.9:cdrwa; to undo it, run on a "
                        f"client that ACL lets in: {UNDO}\n")
        else:
            expected = (f"{script}: ZooKeeper refused to {doing} (NoAuth): the ACL of "
                        "/zkdemo lets this client neither read it nor see the ACL; on a client "
                        f"it lets in, zkCli.sh `getAcl /zkdemo` shows it and {UNDO} undoes it\n")
        assert result.stderr == expected
    if lock == "read-only":   # reading is allowed, so get.py and watch.py work
        listing = run_script("get.py", hosts=ensemble.hosts)
        assert messages(listing.stdout)[1:] == ["/zkdemo/theirs keep  (not in the election)"]
        watcher = scripts("watch.py", hosts=ensemble.hosts)
        watcher.wait_for(lambda m: m == "present /zkdemo/theirs keep")
        assert watcher.stop(signal.SIGINT) == 130
    # Nothing changed: the same ACL, the same one znode.
    assert other_machine.get_acls("/zkdemo")[0] == acl
    assert other_machine.get_children("/zkdemo") == ["theirs"]

    # The advice works: run from the machine the ACL lets in, it opens /zkdemo again.
    undo = run_script("acl-lockdown.py", "--undo", "--recursive", "--source", "127.0.0.9",
                      hosts=ensemble.hosts)
    assert undo.returncode == 0, undo.stderr
    result = run_script("create.py", "0.2", hosts=ensemble.hosts)
    assert result.returncode == 0, result.stderr
    assert "became leader" in messages(result.stdout)


def test_watch_reports_an_update_whose_znode_went_before_the_read(ensemble, zk, scripts):
    """Another client sets a znode's data and deletes it at once (zkCli.sh's
    set and delete pasted together). watch.py has read the znode, so the set
    reaches it as a notification; when the znode is gone by the read that
    follows, the update must still be told, not only the delete."""
    zk.ensure_path("/zkdemo")
    watcher = scripts("watch.py", hosts=ensemble.hosts)
    watcher.wait_for(lambda m: m.startswith("watching /zkdemo"))
    rounds, raced = 40, 0
    for i in range(rounds):
        path = f"/zkdemo/brief-{i}"
        zk.create(path, b"first")
        watcher.wait_for(lambda m: m == f"created {path} first", what=f"{path} created")
        # Sent back to back, as one pasted sequence.
        answers = [zk.set_async(path, b"second"), zk.delete_async(path)]
        for answer in answers:
            answer.get(timeout=10)
        watcher.wait_for(lambda m: m == f"deleted {path}", what=f"the delete of {path}")
        lines = watcher.messages()
        told = [m for m in lines if m.startswith(f"updated {path}")]
        assert told in ([f"updated {path} second"],
                        [f"updated {path}, deleted before it could be read"]), lines
        assert lines.index(told[0]) < lines.index(f"deleted {path}")
        raced += told[0].endswith("before it could be read")
    assert watcher.stop() == 143 and watcher.stderr == ""
    print(f"{raced} of {rounds} updates were followed by the delete before watch.py's read")



@pytest.mark.parametrize("after_another_change", [False, True])
def test_watch_reports_a_znode_deleted_and_made_again_as_such(ensemble, zk, scripts,
                                                             after_another_change):
    """Another client deletes /zkdemo/w and creates it again in one
    transaction: watch.py says the old one went and the new one came, with
    its data, and goes on reporting the new one's updates. Also when another
    change came first and the list is read only after both (watch.py busy)."""
    zk.ensure_path("/zkdemo")
    zk.create("/zkdemo/w", b"old")
    zk.set("/zkdemo/w", b"old, updated")
    watcher = scripts("watch.py", hosts=ensemble.hosts)
    watcher.wait_for(lambda m: m == "present /zkdemo/w old, updated (updated 1 time before "
                                    "this read)")
    with held(watcher) if after_another_change else contextlib.nullcontext():
        if after_another_change:
            zk.create("/zkdemo/another", b"first")
        transaction = zk.transaction()
        transaction.delete("/zkdemo/w")
        transaction.create("/zkdemo/w", b"new")
        assert transaction.commit() == [True, "/zkdemo/w"]
    told = lambda: [m for m in watcher.messages() if "/zkdemo/w" in m or "folded" in m][1:]
    wait_until(lambda: len(told()) >= 2, 10, what="the transaction reported")
    zk.set("/zkdemo/w", b"newer")
    watcher.wait_for(lambda m: m.startswith("updated /zkdemo/w newer") or
                     "folded" in m, timeout=10)
    lines = watcher.messages()
    assert told() == ["deleted /zkdemo/w", "created /zkdemo/w new", "updated /zkdemo/w newer"], \
        lines
    assert watcher.stop() == 143 and watcher.stderr == ""


def test_watch_never_reports_an_update_after_the_delete(ensemble, zk, scripts):
    """A znode updated and then deleted while watch.py is busy, after
    another change that makes it read the list: it reads the list (the znode
    gone) before the notification of the update, and still tells the update
    first, then the delete."""
    zk.ensure_path("/zkdemo")
    zk.create("/zkdemo/brief", b"first")
    watcher = scripts("watch.py", hosts=ensemble.hosts)
    watcher.wait_for(lambda m: m == "present /zkdemo/brief first")
    with held(watcher):
        zk.create("/zkdemo/another", b"first")   # the list's watch fires here
        zk.set("/zkdemo/brief", b"second")       # the data watch here
        zk.delete("/zkdemo/brief")               # and no watch is left to fire
    watcher.wait_for(lambda m: m == "deleted /zkdemo/brief", timeout=10)
    watcher.wait_for(lambda m: m.startswith("updated /zkdemo/brief"), timeout=10)
    lines = watcher.messages()
    assert lines[-3:] == ["created /zkdemo/another first",
                          "updated /zkdemo/brief, deleted before it could be read",
                          "deleted /zkdemo/brief"], lines
    assert watcher.stop() == 143 and watcher.stderr == ""
