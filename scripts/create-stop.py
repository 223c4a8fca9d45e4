#!/usr/bin/env python3
"""Stop every worker that create-start.py started, and their create.py.

It signals only processes create-start.py recorded, and only after checking
that each is still the same process: a pid can be reused by an unrelated
program once ours has exited. Each worker runs in a process group of its own
with its create.py; the group gets SIGTERM, and SIGKILL if it is still there
after --grace seconds. create.py deletes its znode as it exits on SIGTERM.
Nothing running is not an error.
"""

import os

from zkdemo import (make_parser, positive_number, run, signals_held, still_ours, stop_groups,
                    worker_records)


def main():
    parser = make_parser(__doc__, connects=False)
    parser.add_argument("--grace", type=positive_number, default=10.0, metavar="SECONDS",
                        help="how long to wait after SIGTERM before SIGKILL (default 10)")
    args = parser.parse_args()

    # Ctrl-C waits until every recorded worker is stopped: stopping half of
    # them, with the others' records gone, would leave workers nobody tracks.
    with signals_held():
        groups = []
        for path, record in worker_records():
            if record and still_ours(record):
                groups.append(record["pid"])
            os.remove(path)
        killed = stop_groups(groups, args.grace)
    note = f" ({len(killed)} needed SIGKILL)" if killed else ""
    print(f"stopped {len(groups)} worker{'s' if len(groups) != 1 else ''}{note}")


if __name__ == "__main__":
    run(main)
