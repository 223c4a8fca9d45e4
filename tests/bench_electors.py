#!/usr/bin/env python3
"""Two other elections, for `make bench` to set beside create.py's.

  bench_electors.py kazoo HOSTS   kazoo's own Election recipe (its Lock: each
                                  contender watches only its predecessor)
  bench_electors.py naive HOSTS   every contender watches the whole child list:
                                  each change wakes them all (the herd)
  bench_electors.py floor HOST PATH...
                                  no election: an exists() watch on each PATH,
                                  `watching` once all are set, `woken: PATH` as
                                  each goes (the floor a handover cannot beat),
                                  then `listed: PATH` once a get_children of its
                                  parent, sent from the callback, is answered
                                  (the least an election that re-reads needs)

Each prints what create.py prints, in its format: `became leader`,
`no longer leader (exiting)` on SIGTERM, and `woken: <path>` for every watch
notification the process receives, counted where kazoo hands them out.
Not a tutorial page: a yardstick.
"""

import os
import queue
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "scripts"))
from zkdemo import log, run, sequence_number  # noqa: E402
from kazoo.client import KazooClient  # noqa: E402


def count_notifications(zk):
    """Log every watch notification kazoo delivers to this process."""
    dispatch = zk.handler.dispatch_callback

    def counting(callback):
        if callback.type == "watch":
            log(f"woken: {callback.args[0].path}")
        return dispatch(callback)
    zk.handler.dispatch_callback = counting


def kazoo_election(zk, stop):
    election = zk.Election("/zkdemo/kazoo-election", str(os.getpid()))

    def lead():
        log("became leader")
        stop.wait()
        log("no longer leader (exiting)")   # then the Lock deletes its znode
    thread = threading.Thread(target=election.run, args=(lead,), daemon=True)
    thread.start()
    stop.wait()
    election.cancel()
    thread.join()


def naive_election(zk, stop):
    root = "/zkdemo/naive"
    mine = zk.create(root + "/node-", b"", ephemeral=True, sequence=True,
                     makepath=True).rsplit("/", 1)[1]
    changes = queue.Queue()
    leading = False
    changes.put(None)
    while not stop.is_set():
        try:
            changes.get(timeout=0.1)
        except queue.Empty:
            continue
        children = zk.get_children(root, watch=changes.put)  # everyone watches the list
        if not leading and min(children, key=sequence_number) == mine:
            leading = True
            log("became leader")
    if leading:
        log("no longer leader (exiting)")
    zk.delete(f"{root}/{mine}")


def floor(zk, paths):
    gone = threading.Semaphore(0)

    def woken(event):
        log(f"woken: {event.path}")
        zk.get_children_async(event.path.rsplit("/", 1)[0]).rawlink(lambda _: listed(event.path))

    def listed(path):
        log(f"listed: {path}")
        gone.release()
    for path in paths:
        zk.exists(path, watch=woken)
    log("watching")
    for _ in paths:
        gone.acquire()


def main():
    mode, hosts = sys.argv[1], sys.argv[2]
    if mode == "floor":
        zk = KazooClient(hosts=hosts, timeout=10)
        zk.start(timeout=10)
        return floor(zk, sys.argv[3:])
    zk = KazooClient(hosts=hosts, timeout=10)
    count_notifications(zk)
    zk.start(timeout=10)
    stop, done = threading.Event(), threading.Event()

    def elect():
        try:
            (kazoo_election if mode == "kazoo" else naive_election)(zk, stop)
        finally:
            done.set()
    threading.Thread(target=elect, daemon=True).start()
    try:
        while not done.wait(0.2):
            pass
    finally:
        # SIGTERM arrives here as an exception (see zkdemo.run). Not Thread.join:
        # interrupted by an exception, Python 3.11's join can leave is_alive()
        # wrong and return at once; an Event is safe.
        stop.set()
        done.wait(10)
        zk.stop()
        zk.close()

if __name__ == "__main__":
    run(main)
