"""Security: after acl-lockdown.py another address cannot write; the undo
works; a digest password shows up nowhere.

"Another address" is a kazoo client bound to 127.0.0.2, as --source does.
"""

import glob
import os
import subprocess
import sys

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import OPEN_ACL_UNSAFE

from conftest import REPO, STATE_ROOT, run_script, script_command

sys.path.insert(0, os.path.join(REPO, "scripts"))
from zkdemo import ConnectionHandler  # noqa: E402  (the scripts' own --source)

TREE = ["/zkdemo", "/zkdemo/a", "/zkdemo/a/b", "/zkdemo/c"]


@pytest.fixture
def outsider(ensemble, zk):
    client = KazooClient(hosts=ensemble.hosts, handler=ConnectionHandler("127.0.0.2", 10.0))
    client.start(timeout=15)
    for path in TREE:
        zk.ensure_path(path)
    yield client
    client.stop()
    client.close()
    run_script("acl-lockdown.py", "--undo", "--recursive", hosts=ensemble.hosts)


def writes(client, path):
    """Every kind of write on one znode, as (what, call)."""
    calls = [("create under", lambda: client.create(path.rstrip("/") + "/intruder", b"")),
             ("set", lambda: client.set(path, b"changed")),
             ("setACL", lambda: client.set_acls(path, OPEN_ACL_UNSAFE))]
    if path != "/":
        calls.append(("delete", lambda: client.delete(path)))
    return calls


def refused(call):
    try:
        call()
    except NoAuthError:
        return True
    return False


def test_lockdown_keeps_another_address_from_changing_root(ensemble, outsider):
    assert run_script("acl-lockdown.py", hosts=ensemble.hosts).returncode == 0
    for what, call in writes(outsider, "/"):
        assert refused(call), f"{what} / was allowed from 127.0.0.2"
    assert outsider.get_children("/")  # reading stays open to all
    # ACLs are not inherited: /zkdemo is still open, as the script warns.
    assert not refused(lambda: outsider.set("/zkdemo", b"still open"))


def test_recursive_lockdown_refuses_every_write_everywhere_and_undo_restores(ensemble,
                                                                              outsider):
    assert run_script("acl-lockdown.py", "--recursive", hosts=ensemble.hosts).returncode == 0
    tried = 0
    for path in ["/"] + TREE:
        for what, call in writes(outsider, path):
            assert refused(call), f"{what} {path} was allowed from 127.0.0.2"
            tried += 1
    assert tried == 3 + 4 * len(TREE)

    assert run_script("acl-lockdown.py", "--undo", "--recursive",
                      hosts=ensemble.hosts).returncode == 0
    for path in reversed(TREE):  # leaves first, so that each delete can succeed
        for what, call in writes(outsider, path):
            assert not refused(call), f"{what} {path} still refused after --undo"
            if what == "create under":
                outsider.delete(path + "/intruder")  # so that `delete path` finds it empty
    for what, call in writes(outsider, "/"):
        assert not refused(call), f"{what} / still refused after --undo"
    outsider.delete("/intruder")


def test_a_digest_password_appears_in_no_output_log_or_process_listing(ensemble, zk, tmp_path):
    password = "pa55-which-must-not-leak"
    env = dict(os.environ, ZKDEMO_HOSTS=ensemble.hosts, ZKDEMO_PASSWORD=password)
    process = subprocess.Popen(script_command("create-with-digest.py", "--keep"), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               stdin=subprocess.DEVNULL)
    listings = []
    while process.poll() is None:  # what `ps` could show while it runs
        try:
            listings.append(open(f"/proc/{process.pid}/cmdline", "rb").read())
        except OSError:
            break
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert listings and not any(password.encode() in cmdline for cmdline in listings)
    assert password not in out + err
    kept = out.split("kept ")[1].split(":")[0]
    zk.add_auth("digest", f"alice:{password}")
    acl = zk.get_acls(kept)[0][0]
    assert acl.id.scheme == "digest" and password not in acl.id.id
    zk.delete(kept)
    # ZooKeeper's own logs, of every server of the test ensemble.
    logs = glob.glob(os.path.join(STATE_ROOT, "shared", "zoo*", "*.log"))
    assert logs
    for log in logs:
        assert password not in open(log, errors="replace").read(), log
