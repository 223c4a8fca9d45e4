#!/usr/bin/env python3
"""List the znodes under /zkdemo, in sequence order, with their data.

The election's leader is create.py's znode (node- and ten digits) with the
lowest sequence number: it is marked "leader". Run it while create.py
processes come and go. A znode another client made under /zkdemo is listed
as it is, marked as not in the election, with its number of children if it
has any.

A read is answered by the one server you are connected to, from its own copy
of the tree, which may be a little behind the leader. --sync first asks that
server to catch up with the leader, so the list includes every write that
had completed, by any client, before get.py started.

--every SECONDS reads again and again in the same session, as a client that
keeps running does; cut its server off from the others (the lab's
`lab.py partition`) and watch what plain reads and --sync reads show then.
"""

import time

from zkdemo import (CONNECTION_ERRORS, ROOT, NoAuthError, NoNodeError, connect, data_text,
                    disconnect, elector_sequence, electors, in_sequence, list_root, log,
                    make_parser, positive_number, run)


def show(zk, sync):
    """One read: sync first when asked, then list /zkdemo with every znode's data."""
    if sync:
        zk.sync(ROOT)
    try:
        children = in_sequence(list_root(zk))
    except NoNodeError:
        log(f"{ROOT} does not exist yet: create.py makes it")
        return
    if not children:
        log(f"{ROOT} has no znodes")
        return
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


def main():
    parser = make_parser(__doc__)
    parser.add_argument("--sync", action="store_true",
                        help="sync() with the leader before reading")
    parser.add_argument("--every", type=positive_number, metavar="SECONDS",
                        help="read again every SECONDS seconds, in the same session, "
                             "until Ctrl-C")
    args = parser.parse_args()
    zk = connect(args)
    try:
        while True:
            try:
                show(zk, args.sync)
            except CONNECTION_ERRORS as e:
                if not args.every:
                    raise
                # The listener has said what happened to the connection; a read
                # asked for while kazoo reconnects waits for it.
                log(f"no answer: the connection went ({type(e).__name__}); reading again")
            if not args.every:
                return 0
            time.sleep(args.every)
    finally:
        disconnect(zk)


if __name__ == "__main__":
    run(main)
