#!/usr/bin/env python3
"""Stop every worker that create-start.py started, and their create.py.

It signals only processes create-start.py recorded, and only after checking
that each is still the same process: a pid can be reused by an unrelated
program once ours has exited. Each worker runs in a process group of its own
with its create.py; the group gets SIGTERM, and SIGKILL if it is still there
after --grace seconds. create.py deletes its znode as it exits on SIGTERM.
Nothing running is not an error.
"""

import glob
import os
import signal
import time

from zkdemo import make_parser, positive_number, proc_stat, run, still_ours, worker_records


def group_alive(pgid):
    """True while a process of the group runs. An exited worker stays a zombie
    until init reaps it, and kill(0) would still find it: read /proc instead."""
    stats = filter(None, map(proc_stat, glob.glob("/proc/[0-9]*/stat")))
    return any(state != "Z" and group == pgid for state, group, _ in stats)


def main():
    parser = make_parser(__doc__, connects=False)
    parser.add_argument("--grace", type=positive_number, default=10.0, metavar="SECONDS",
                        help="how long to wait after SIGTERM before SIGKILL (default 10)")
    args = parser.parse_args()

    groups = []
    for path, record in worker_records():
        if record and still_ours(record):
            os.killpg(record["pid"], signal.SIGTERM)
            groups.append(record["pid"])
        os.remove(path)

    deadline = time.monotonic() + args.grace
    while any(map(group_alive, groups)) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed = [pgid for pgid in groups if group_alive(pgid)]
    for pgid in killed:
        os.killpg(pgid, signal.SIGKILL)
    note = f" ({len(killed)} needed SIGKILL)" if killed else ""
    print(f"stopped {len(groups)} worker{'s' if len(groups) != 1 else ''}{note}")


if __name__ == "__main__":
    run(main)
