#!/usr/bin/env python3
"""Digest auth: a znode only one user, with the right password, may use.

ZooKeeper's "digest" scheme names a user by user:base64(sha1(user:password)).
The script creates /zkdemo/digest-<user>-<pid> with the ACL

  digest:<user>:<that hash>:cdrwa

so the password itself is never stored, then shows what ZooKeeper answers to
three clients: one that sent no credentials, one that sent a wrong password
and one that sent the right one (each by `addauth digest user:password`, as
kazoo's add_auth does). It deletes the znode at the end, or keeps it with
--keep so you can try zkCli.sh on it.

The password comes from $ZKDEMO_PASSWORD, or is asked for without echo; with
neither (no terminal to ask in) the script exits with 2. It is never taken
from the command line (where your shell's history keeps it and `ps` shows it
to everyone) and never printed.
"""

import getpass
import os
import sys

from zkdemo import (ROOT, UserError, make_digest_acl, acl_text, attempt, connect, disconnect,
                    ensure_root, log, make_parser, run)


def read_password():
    password = os.environ.get("ZKDEMO_PASSWORD")
    if password == "":
        raise UserError("ZKDEMO_PASSWORD is empty", code=2)
    if password is None and not sys.stdin.isatty():
        raise UserError("no password: set ZKDEMO_PASSWORD or run in a terminal to be asked",
                        code=2)
    if password is None:
        try:
            password = getpass.getpass("password (not shown): ")
        except EOFError:   # Ctrl-D: the line it ended was never finished
            print(file=sys.stderr)
            password = ""
        if not password:
            raise UserError("no password typed", code=2)
    return password


def main():
    parser = make_parser(__doc__)
    parser.add_argument("--user", default="alice", help="the user name (default alice)")
    parser.add_argument("--keep", action="store_true",
                        help="leave the znode in place at the end")
    args = parser.parse_args()
    if not args.user or ":" in args.user:
        parser.error(f"--user {args.user!r}: a user name must be non-empty, without ':'")
    password = read_password()
    path = f"{ROOT}/digest-{args.user}-{os.getpid()}"

    owner = connect(args)
    clients = [owner]
    try:
        ensure_root(owner)
        owner.add_auth("digest", f"{args.user}:{password}")
        acl = make_digest_acl(args.user, password, all=True)
        owner.create(path, f"a secret of {args.user}'s".encode(), acl=[acl])
        log(f"created {path}")
        log(f"  ACL as ZooKeeper stores it: {acl_text(owner.get_acls(path)[0])}")
        log(f"  that is {args.user}:base64(sha1({args.user}:password)), not the password")

        for who, credentials in (("no credentials", None),
                                 ("a wrong password", f"{args.user}:{password}-wrong"),
                                 ("the right password", f"{args.user}:{password}")):
            client = connect(args)
            clients.append(client)
            if credentials:
                client.add_auth("digest", credentials)
            log(f"a client with {who}:")
            attempt(f"read {path}", client.get, path)
            attempt(f"write {path}", client.set, path, b"changed")
        if args.keep:
            log(f"kept {path}: in zkCli.sh, `addauth digest {args.user}:<password>` "
                f"then `get {path}`")
    finally:
        if not args.keep and owner.exists(path):
            owner.delete(path)  # DELETE is checked on the parent, /zkdemo, which is open
            log(f"deleted {path}")
        for client in clients:
            disconnect(client)


if __name__ == "__main__":
    run(main)
