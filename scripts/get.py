#!/usr/bin/env python3
"""List the znodes under /zkdemo, in sequence order, with their data, and exit.

The election's leader is create.py's znode (node- and ten digits) with the
lowest sequence number: it is marked "leader". Run it while create.py
processes come and go. A znode another client made under /zkdemo is listed
as it is, marked as not in the election, with its number of children if it
has any.

A read is answered by the one server you are connected to, from its own copy
of the tree, which may be a little behind the leader. --sync first asks that
server to catch up with the leader, so the list includes every write that
had completed, by any client, before get.py started.
"""

from zkdemo import (ROOT, NoAuthError, NoNodeError, connect, data_text, disconnect,
                    elector_sequence, electors, in_sequence, list_root, log, make_parser, run)


def main():
    parser = make_parser(__doc__)
    parser.add_argument("--sync", action="store_true",
                        help="sync() with the leader before reading")
    args = parser.parse_args()
    zk = connect(args)
    try:
        if args.sync:
            zk.sync(ROOT)
        try:
            children = in_sequence(list_root(zk))
        except NoNodeError:
            log(f"{ROOT} does not exist yet: create.py makes it")
            return 0
        if not children:
            log(f"{ROOT} has no znodes")
            return 0
        leader = next(iter(electors(children)), None)
        log(f"{ROOT} has {len(children)} znode{'s' if len(children) != 1 else ''}")
        # All the reads at once, answers taken in order: one round trip, not one per znode.
        answers = [(f"{ROOT}/{name}", name, zk.get_async(f"{ROOT}/{name}")) for name in children]
        for path, name, answer in answers:
            children_note = ""
            try:
                data, stat = answer.get()
                text = data_text(data)
                if stat.numChildren:
                    children_note = f"  ({stat.numChildren} child" \
                                    f"{'ren' if stat.numChildren != 1 else ''})"
            except NoNodeError:
                continue  # it went while we listed
            except NoAuthError:
                text = "(data not readable here: NoAuth)"  # see create-with-digest.py
            if name == leader:
                mark = "  leader"
            else:
                mark = "" if elector_sequence(name) is not None else "  (not in the election)"
            log(f"{path} {text}{children_note}{mark}")
    finally:
        disconnect(zk)


if __name__ == "__main__":
    run(main)
