#!/usr/bin/env python3
"""Show each ZooKeeper server's state, and whether the ensemble has a quorum.

For every server in --hosts it sends the four-letter word `srvr` to the client
port (no session needed) and prints one line:

  address   mode   zxid   znodes   connections   latency min/avg/max

The mode is leader, follower or standalone while a server serves; "not
serving" when it runs but has no quorum to follow (it answers, but refuses
clients); "down" when nothing answers within --timeout (a paused server
accepts the connection and then says nothing). The zxid is the id of the
last write the server has applied: its high half counts leader elections
(epochs), its low half the writes within one, so followers that are behind
show a smaller zxid than the leader.

A last line says whether a quorum serves and which server leads; the exit
status is 0 when one does and 1 when not. A follower serves only while it
follows a leader with a quorum, so one serving server is enough to tell. --watch shows it anew every second
until Ctrl-C: run it while you kill servers with local-cluster.py.
"""

import concurrent.futures
import socket
import sys
import time

from zkdemo import check_source, log, make_parser, run


def srvr(address, timeout, source=None):
    """The server's answer to `srvr` as a dict, "not serving", or None (down)."""
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout,
                                      source_address=(source, 0) if source else None) as s:
            s.sendall(b"srvr")
            answer = s.makefile("rb").read().decode(errors="replace")
    except OSError:
        return None
    if "not currently serving" in answer:
        return "not serving"
    fields = dict(line.split(": ", 1) for line in answer.splitlines() if ": " in line)
    return fields if "Mode" in fields else None


def describe(address, answer):
    if not isinstance(answer, dict):
        return f"{address:<22} {answer or 'down'}"
    return (f"{address:<22} {answer['Mode']:<10} zxid {answer['Zxid']:<12} "
            f"znodes {answer['Node count']:<5} connections {answer['Connections']:<3} "
            f"latency {answer['Latency min/avg/max']} ms")


def report(args):
    """Print one status block; True when a quorum serves."""
    addresses = args.hosts.split(",")
    with concurrent.futures.ThreadPoolExecutor(len(addresses)) as pool:
        answers = list(pool.map(lambda a: srvr(a, args.timeout, args.source), addresses))
    for address, answer in zip(addresses, answers):
        log(describe(address, answer))
    modes = {a: answer["Mode"] for a, answer in zip(addresses, answers)
             if isinstance(answer, dict)}
    up = sum(answer is not None for answer in answers)
    counts = f"{len(modes)} of {len(addresses)} serving, {up} answering"
    leaders = [a for a, mode in modes.items() if mode in ("leader", "standalone")]
    if leaders and modes[leaders[0]] == "standalone":
        log(f"standalone: {leaders[0]} serves on its own ({counts})")
    elif leaders:
        log(f"quorum: {leaders[0]} leads ({counts})")
    elif modes:
        # A follower serves only while it follows a leader that has a quorum.
        log(f"quorum: followers serve; their leader is not in --hosts ({counts})")
    else:
        log(f"no quorum: no server serves, so clients can neither read nor write ({counts})")
    return bool(modes)


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
