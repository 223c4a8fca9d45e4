#!/usr/bin/env python3
"""Create, read, change and delete znodes that carry IP-based ACLs.

Under a scratch znode /zkdemo/acl-demo-<pid> it creates three znodes:

  open        world:anyone:cdrwa                    everyone may do anything
  local-write world:anyone:r, ip:127.0.0.1:cdrwa    everyone reads, 127.0.0.1 writes
  local-only  ip:127.0.0.1:cdrwa                    only 127.0.0.1, even to read

then tries each operation on each and prints what ZooKeeper answered:
"allowed", or "denied (NoAuth)". ZooKeeper checks an ACL against the address
the client connects from, not against who created the znode. Run it plainly
and everything is allowed; run it with --source 127.0.0.2 (on a VM: with
--hosts set to the VM's own address) and see what is denied.

Deleting a znode needs the DELETE permission on its *parent*, so the scratch
znode, open to all, can always be removed: the script cleans up after itself.
"""

import os

from zkdemo import (ACL, OPEN_ACL_UNSAFE, ROOT, Id, NoAuthError, Permissions, acl_text, attempt,
                    client_address, connect, disconnect, ensure_root, log, make_parser, run)

READ_ONLY_FOR_ALL = ACL(Permissions.READ, Id("world", "anyone"))
ALL_FOR_LOCALHOST = ACL(Permissions.ALL, Id("ip", "127.0.0.1"))
ZNODES = {"open": OPEN_ACL_UNSAFE,
          "local-write": [READ_ONLY_FOR_ALL, ALL_FOR_LOCALHOST],
          "local-only": [ALL_FOR_LOCALHOST]}


def main():
    args = make_parser(__doc__).parse_args()
    zk = connect(args)
    scratch = f"{ROOT}/acl-demo-{os.getpid()}"
    try:
        ensure_root(zk)
        log(f"connected from {client_address(args)}; working under {scratch}")
        zk.create(scratch, b"scratch space of create-with-acls.py")
        for name, acl in ZNODES.items():
            path = f"{scratch}/{name}"
            log(f"{name}: {acl_text(acl)}")
            attempt(f"create {name}", zk.create, path, b"first", acl=acl)
            attempt(f"read {name}", zk.get, path)
            attempt(f"list children of {name}", zk.get_children, path)
            attempt(f"write {name}", zk.set, path, b"second")
            attempt(f"create a child of {name}", zk.create, f"{path}/child", b"")
            attempt(f"change the ACL of {name}", zk.set_acls, path, acl)
        log("delete: the permission checked is the parent's, and the scratch znode is open")
        for name in ZNODES:
            if zk.exists(f"{scratch}/{name}/child"):
                attempt(f"delete {name}/child", zk.delete, f"{scratch}/{name}/child")
            attempt(f"delete {name}", zk.delete, f"{scratch}/{name}")
    finally:
        try:
            zk.delete(scratch, recursive=True)
        except NoAuthError:
            log(f"could not remove {scratch}: run this script from 127.0.0.1 to clean up")
        finally:
            disconnect(zk)


if __name__ == "__main__":
    run(main)
