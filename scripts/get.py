#!/usr/bin/env python3
"""List the znodes under /zkdemo, in sequence order, with their data, and exit.

The election's leader is the node-… znode with the lowest sequence number:
it is marked "leader". Run it while create.py processes come and go.

A read is answered by the one server you are connected to, from its own copy
of the tree, which may be a little behind the leader. --sync first asks that
server to catch up with the leader, so the list includes every write that
had completed, by any client, before get.py started.
"""

from zkdemo import (ROOT, NoAuthError, NoNodeError, connect, disconnect, log, make_parser, run,
                    sequence_number)


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
            children = zk.get_children(ROOT)
        except NoNodeError:
            log(f"{ROOT} does not exist yet: create.py makes it")
            return 0
        if not children:
            log(f"{ROOT} has no znodes")
            return 0
        children.sort(key=lambda name: (sequence_number(name), name))
        electors = [c for c in children if c.startswith("node-")]
        log(f"{ROOT} has {len(children)} znode{'s' if len(children) != 1 else ''}")
        # All the reads at once, answers taken in order: one round trip, not one per znode.
        answers = [(f"{ROOT}/{name}", name, zk.get_async(f"{ROOT}/{name}")) for name in children]
        for path, name, answer in answers:
            try:
                text = answer.get()[0].decode(errors="replace")
            except NoNodeError:
                continue  # it went while we listed
            except NoAuthError:
                text = "(data not readable here: NoAuth)"  # see create-with-digest.py
            mark = "  leader" if electors and name == electors[0] else ""
            log(f"{path} {text}{mark}")
    finally:
        disconnect(zk)


if __name__ == "__main__":
    run(main)
