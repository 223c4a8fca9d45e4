#!/usr/bin/env python3
"""Lock ZooKeeper down: / becomes read-only for everyone but 127.0.0.1.

It sets the ACL (access control list) of the root znode / to

  world:anyone:r          anyone may read / and list its children
  ip:127.0.0.1:cdrwa      a client connecting from 127.0.0.1 may do anything

and prints the ACL before and after. A client from another address can then
no longer create znodes directly under / or change /. Try it: on a VM, point a
script at the VM's own address (--hosts 10.0.10.101), so that it connects
from that address rather than 127.0.0.1; on the loopback ensemble, add
--source 127.0.0.2.

ZooKeeper ACLs are not inherited. Locking / does not lock /zkdemo or any other
znode that exists: each keeps its own ACL. --recursive sets the same ACL on
every znode (ZooKeeper's own /zookeeper excepted). --undo gives everyone every
permission again (world:anyone:cdrwa); run it from 127.0.0.1.
"""

from zkdemo import (ACL, OPEN_ACL_UNSAFE, Id, NoAuthError, NoNodeError, Permissions, UserError,
                    acl_text, client_address, connect, disconnect, log, make_parser, run)

LOCKED = [ACL(Permissions.READ, Id("world", "anyone")),
          ACL(Permissions.ALL, Id("ip", "127.0.0.1"))]


def every_znode(zk, path="/"):
    """Every znode below path, parents first; ZooKeeper's /zookeeper left out."""
    try:
        children = zk.get_children(path)
    except NoAuthError:
        return  # we may not even list it; set_acls will say so
    for name in sorted(children):
        child = path.rstrip("/") + "/" + name
        if child == "/zookeeper":
            continue
        yield child
        yield from every_znode(zk, child)


def main():
    parser = make_parser(__doc__)
    parser.add_argument("--undo", action="store_true",
                        help="open / again to everyone (world:anyone:cdrwa)")
    parser.add_argument("--recursive", action="store_true",
                        help="set the same ACL on every existing znode, not only /")
    args = parser.parse_args()
    acl = OPEN_ACL_UNSAFE if args.undo else LOCKED
    zk = connect(args)
    try:
        log(f"ACL of / before: {acl_text(zk.get_acls('/')[0])}")
        try:
            zk.set_acls("/", acl)
        except NoAuthError:
            raise UserError(f"ZooKeeper refused to change the ACL of / for a client at "
                            f"{client_address(args)} (NoAuth): only 127.0.0.1 may")
        log(f"ACL of / after:  {acl_text(zk.get_acls('/')[0])}")
        if args.recursive:
            count = 0
            for path in list(every_znode(zk)):
                try:
                    zk.set_acls(path, acl)
                    count += 1
                except NoNodeError:
                    pass  # an ephemeral znode that went meanwhile
                except NoAuthError:
                    log(f"left {path} as it is: its ACL does not let this client change it")
            log(f"set the same ACL on {count} more znode{'s' if count != 1 else ''} "
                "(ZooKeeper's own /zookeeper left as it is)")
        elif not args.undo:
            log("ACLs are not inherited: /zkdemo and every other existing znode keep "
                "their own ACL (use --recursive to change them too)")
    finally:
        disconnect(zk)


if __name__ == "__main__":
    run(main)
