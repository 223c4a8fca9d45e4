#!/usr/bin/env python3
"""Start NUMBER background workers that each run create.py over and over.

create.py stays a random 1 to 60 seconds, so with a few workers running
someone is always leaving and the election keeps moving: watch it with
watch.py and get.py. The workers are detached from this terminal and write
to log files; create-start.py returns at once. Stop them with create-stop.py.
--hosts, --timeout and --source are passed on to create.py.
"""

import argparse
import itertools
import json
import os
import subprocess
import sys

from zkdemo import (UserError, connect, disconnect, make_parser, open_private, proc_stat, run,
                    run_dir, signals_held, still_ours, stop_groups, worker_records)

HERE = os.path.dirname(os.path.abspath(__file__))


def worker_count(text):
    if not text.isdigit() or not 1 <= int(text) <= 200:
        raise argparse.ArgumentTypeError(
            f"NUMBER must be a whole number from 1 to 200, got {text!r}")
    return int(text)


# The worker: a shell loop that runs create.py again each time it exits, until
# SIGTERM. A shell costs a megabyte where a second Python would cost twenty,
# which counts in a small VM. create-stop.py signals the worker's whole process
# group, so create.py gets the SIGTERM too and cleans up; the loop only has to
# stop. After a failure (no server answered, say) it waits before trying again.
WORKER = """
trap 'stopping=1' TERM
stopping=
while [ -z "$stopping" ]; do
    "$@"
    case $? in 0|130|143) ;; *) [ -n "$stopping" ] || sleep 2 ;; esac
done
"""


def main():
    parser = make_parser(__doc__)
    parser.add_argument("number", type=worker_count, metavar="NUMBER",
                        nargs="?", help="how many workers to start (1 to 200)")
    args = parser.parse_args()
    create_args = ["--hosts", args.hosts, "--timeout", str(args.timeout)]
    if args.source:
        create_args += ["--source", args.source]
    if args.number is None:
        parser.error("NUMBER is required: how many workers to start (1 to 200)")
    if not os.path.exists(f"/proc/{os.getpid()}/stat"):
        raise UserError("this needs Linux's /proc to keep track of its workers")

    # Workers that cannot reach ZooKeeper would only retry forever: check first.
    disconnect(connect(args))
    directory = run_dir()
    # Workers still running from an earlier create-start.py keep their logs;
    # the records of those gone go, since their pids can come round again.
    in_use = set()
    for path, record in worker_records():
        if record and still_ours(record):
            in_use.add(record["log"])
        else:
            os.remove(path)
    free_logs = (path for n in itertools.count(1)
                 if (path := os.path.join(directory, f"worker-{n}.log")) not in in_use)
    started = []
    # Ctrl-C (or SIGTERM, SIGHUP) waits for the worker being started to be
    # recorded too, and then stops every worker this run started: none is
    # left running, and none runs unrecorded.
    with signals_held() as signals:
        for log_path in itertools.islice(free_logs, args.number):
            if signals:
                break
            started.append(start_worker(log_path, directory, create_args))
        if signals:
            stop_groups(started, grace=10.0)
            for pid in started:
                os.remove(os.path.join(directory, "workers", f"{pid}.json"))
            return
    print(f"started {len(started)} worker{'s' if len(started) > 1 else ''} "
          f"(pids {' '.join(map(str, started))}) running create.py against {args.hosts}")
    print(f"logs: {directory}/worker-*.log    stop them: create-stop.py")


def start_worker(log_path, directory, create_args):
    """Start one worker and record it; its pid."""
    with open_private(log_path, "ab") as log_file:
        # A session of its own: no terminal, and a process group that
        # create-stop.py can signal as a whole (the worker and its create.py).
        worker = subprocess.Popen(
            ["sh", "-c", WORKER, "create-start-worker", sys.executable,
             os.path.join(HERE, "create.py"), *create_args],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True)
    started_at = proc_stat(f"/proc/{worker.pid}/stat")[2]  # with the pid, names it
    record = {"pid": worker.pid, "start_time": started_at, "log": log_path}
    with open_private(os.path.join(directory, "workers", f"{worker.pid}.json"), "x") as f:
        json.dump(record, f)
    return worker.pid


if __name__ == "__main__":
    run(main)
