#!/usr/bin/env python3
"""Show each ZooKeeper server's state, and whether the ensemble can serve writes.

For every server in --hosts it sends two four-letter words to the client port
(no session needed): `srvr` for the line it prints,

  address   mode   zxid   znodes   connections   latency min/avg/max

and `mntr` for what the server knows of the others: the ensemble's size and,
on the leader, how many followers it counts as in step with it (synced).

The mode is leader, follower or standalone while a server serves; "not
serving" when it runs but has no quorum to follow (it answers, but refuses
clients); "down" when nothing answers within --timeout (a paused server
accepts the connection and then says nothing). The zxid is the id of the
last write the server has applied: its high half counts leader elections
(epochs), its low half the writes within one.

A server's own word is not enough. When both followers go silent (cut off,
or their machines stopped: a killed process's connections close, and that is
noticed within a tick), the leader goes on answering "leader" until it
notices, about syncLimit ticks later; a follower whose leader went silent
says "follower" for as long. So the last line
counts the servers that are up *and* in step with one leader: the leader,
plus the followers it says are synced, less any other server in --hosts
that does not answer as a follower in step (in the broadcast phase). Writes
go through only while that count is a majority of the ensemble. The exit
status is 0 when it is, and 1 otherwise: also when the followers answer
and their leader does not (cut off from this client, hanging or down), and
when the leader is not in --hosts and so cannot be asked.

That count is the leader's view, and it can be late. mntr's synced followers
are the followers still connected to the leader: a leader cut off from them
counts them until their connections time out, up to syncLimit ticks, and
they still answer as its followers for as long. Asked from where they answer,
or with only the leader in --hosts, status.py then says "quorum" (exit 0)
for a leader that can no longer write.

--watch shows it anew every second until Ctrl-C: run it while you kill
servers with local-cluster.py.
"""

import concurrent.futures
import socket
import sys
import time

from zkdemo import check_source, log, make_parser, run


def ask(address, word, timeout, source=None):
    """A four-letter word's answer, or None when nothing answers in time."""
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout,
                                      source_address=(source, 0) if source else None) as s:
            s.sendall(word.encode())
            return s.makefile("rb").read().decode(errors="replace")
    except OSError:
        return None


def server_view(address, timeout, source=None):
    """What one server says of itself: a dict with its srvr fields and a few of
    mntr's, {"Mode": "not serving"}, or None when it is down."""
    answer = ask(address, "srvr", timeout, source)
    if answer is None:
        return None
    if "not currently serving" in answer:
        return {"Mode": "not serving"}
    view = dict(line.split(": ", 1) for line in answer.splitlines() if ": " in line)
    if "Mode" not in view:
        return None
    metrics = ask(address, "mntr", timeout, source) or ""
    view.update(line.split("\t", 1) for line in metrics.splitlines() if "\t" in line)
    return view


def in_step(leader, views, size):
    """How many servers are up and in step with `leader`: the leader itself,
    plus the followers it counts as synced, less the servers in --hosts that
    do not answer as followers in step (the broadcast phase). A follower's
    zxid does not tell its leader: it keeps the last epoch's until the first
    write of the new one."""
    followers = [v for v in views if v is not leader and v and v.get("Mode") == "follower"
                 and v.get("zk_peer_state", "").endswith("broadcast")]
    astray = len(views) - 1 - len(followers)   # the others in --hosts, not following it
    synced = int(leader.get("zk_synced_followers", 0))
    return 1 + max(0, min(synced, size - 1 - astray))


def describe(address, view):
    if not view or view["Mode"] == "not serving":
        return f"{address:<22} {view['Mode'] if view else 'down'}"
    line = (f"{address:<22} {view['Mode']:<10} zxid {view['Zxid']:<12} "
            f"znodes {view['Node count']:<5} connections {view['Connections']:<3} "
            f"latency {view['Latency min/avg/max']} ms")
    if view["Mode"] == "leader":
        line += f"  synced followers {view.get('zk_synced_followers', '?')}"
    elif view["Mode"] == "follower" and not view.get("zk_peer_state", "").endswith("broadcast"):
        line += f"  ({view.get('zk_peer_state', 'state unknown')})"
    return line


def report(args):
    """Print one status block; True when a majority is in step with one leader."""
    addresses = args.hosts.split(",")
    with concurrent.futures.ThreadPoolExecutor(len(addresses)) as pool:
        views = list(pool.map(lambda a: server_view(a, args.timeout, args.source), addresses))
    for address, view in zip(addresses, views):
        log(describe(address, view))
    serving = [v for v in views if v and v["Mode"] != "not serving"]
    up = sum(v is not None for v in views)
    size = next((int(v["zk_quorum_size"]) for v in serving if "zk_quorum_size" in v),
                len(addresses))
    majority = size // 2 + 1
    counts = f"{len(serving)} of {len(addresses)} serving, {up} answering"
    standalone = [a for a, v in zip(addresses, views) if v in serving and v["Mode"] == "standalone"]
    if standalone:
        log(f"standalone: {standalone[0]} serves on its own ({counts})")
        return True
    leaders = sorted(((in_step(v, views, size), a) for a, v in zip(addresses, views)
                      if v in serving and v["Mode"] == "leader"), reverse=True)
    if leaders:
        count, leader = leaders[0]
        if count >= majority:
            log(f"quorum: {leader} leads, {count} of {size} servers in step with it "
                f"(a majority is {majority})")
            return True
        log(f"no quorum: {leader} still says leader, but only {count} of {size} servers "
            f"{'is' if count == 1 else 'are'} in step with it (a majority is {majority}); "
            "writes cannot go through, and it gives up about syncLimit ticks after its followers "
            "last answered")
    elif serving and len(addresses) >= size and up < len(addresses):
        # Every server was asked: the leader the followers still follow is one
        # that did not answer us.
        silent = ", ".join(a for a, v in zip(addresses, views) if v is None)
        log(f"no leader answers: followers still follow a leader this client cannot reach "
            f"(cut off, hanging or down: {silent}); writes may not go through, and if the "
            f"followers have lost it too they elect another about syncLimit ticks after they "
            f"last heard from it ({counts})")
    elif serving:
        log(f"quorum unknown: followers answer, but their leader is not in --hosts; "
            f"give every server to check ({counts})")
    elif up >= majority:
        log(f"no leader yet: a majority answers but no server serves, so they are electing "
            f"one (or cannot reach each other); an election takes a second or two: ask "
            f"again ({counts})")
    else:
        log(f"no quorum: no server serves, so clients can neither read nor write ({counts})")
    return False


def main():
    parser = make_parser(__doc__, timeout=2.0)
    parser.add_argument("--watch", action="store_true",
                        help="show the status again every second until Ctrl-C")
    args = parser.parse_args()
    if args.source:
        check_source(args.source)
    if not args.watch:
        return 0 if report(args) else 1
    while True:
        if sys.stdout.isatty():
            print("\033[H\033[J", end="")  # clear the screen, as watch(1) does
        report(args)
        print(flush=True)
        time.sleep(1)


if __name__ == "__main__":
    run(main)
