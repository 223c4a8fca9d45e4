#!/usr/bin/env python3
"""Create an ephemeral, sequential znode under /zkdemo and take part in a
leader election with every other create.py.

  ephemeral   the znode lives as long as this process's ZooKeeper session:
              when the process exits, or its session expires, it is gone.
  sequential  ZooKeeper appends a counter to the name (node-0000000042), one
              higher for every znode created under /zkdemo, so the znodes
              have an order that every client sees the same.

The election is the recipe from ZooKeeper's documentation: the lowest sequence
number leads. Only znodes named as this script names them (node- and the ten
digits ZooKeeper appends) take part: other clients share /zkdemo, and a
znode of theirs must not lead, nor keep anyone waiting behind it. Everyone
else watches only the znode just before its own, so that when a znode goes,
exactly one process is woken up to re-check (no "herd" of watchers).
kazoo's kazoo.recipe.election.Election does the same through its Lock
recipe; this script does it by hand to show how it works.
Each process also watches its own znode: if another client deletes it
(zkCli.sh's `delete`), the next in line takes over, so this process says
"no longer leader" at once and joins again at the back.

It stays NUMBER seconds (random 1 to 60 when omitted), then deletes its znode
and exits. It prints "became leader", "following <znode>" while it waits, and
"no longer leader" as soon as leadership may be gone: on exit, and also when the
connection is suspended, because from then on it cannot know whether its
session, and so its znode, still exists.

A connection that stays up is not proof enough. A server cut off from the
majority still answers its clients' pings until it notices, up to syncLimit
ticks later, while the majority may already have expired the session and
handed leadership on. So the leader holds a lease: every third of the session
timeout each elector asks ZooKeeper to commit a write that changes nothing
(a transaction that only checks its znode). Committed, it proves that the
leader heard from the session after the write was sent, so the session lives
at least a session timeout from then. A leader whose lease runs out says
"no longer leader" before ZooKeeper could expire its session.

Stopped while its connection is down, it waits (at most until the session
would have expired) for ZooKeeper, to delete its znode so the next in line
takes over at once; it says whether it did, or whether the znode stays until
ZooKeeper expires the session.
"""

import datetime
import json
import os
import queue
import random
import socket
import threading
import time

from zkdemo import (CONNECTION_ERRORS, ELECTION_PREFIX, ROOT, KazooState, NoAuthError,
                    NoChildrenForEphemeralsError, NoNodeError, UserError, client_address, connect,
                    disconnect, electors, ensure_root, list_root, log, make_parser,
                    positive_number, refused, run, session_timeout)

PREFIX = f"{ROOT}/{ELECTION_PREFIX}"
LEASE = 0.9   # of the session timeout: what is left is the margin for clocks and ticks


class Elector:
    def __init__(self, ip):
        self.zk = None
        self.ip = ip
        self.confirmed = None       # when the last write ZooKeeper committed for us was sent
        self.next_renewal = 0.0     # when to confirm the session again
        self.lapsed = False         # stepped down because the lease ran out
        self.path = None            # our znode, once created
        self.following = None       # the znode we watch, while we wait
        self.deleted = False        # another client deleted our znode
        self.rewatch = False        # our znode needs its watch (new, or the last one fired)
        self.leaving = False
        self.leading = False
        self.unsure = False         # a create's answer was lost: it may exist
        self.session_lost = False   # set from kazoo's thread, read in check()
        self.suspended_at = None    # when the connection last went down
        self.answered = threading.Event()  # set while ZooKeeper has a word for us
        self.lock = threading.Lock()
        self.wakeups = queue.Queue()  # "check" when the election may have changed

    # kazoo calls these three from its own thread: they must not block.
    def on_state(self, state):
        if state != KazooState.CONNECTED:
            self.step_down("connection " + state.lower())
            self.following = None
        if state == KazooState.SUSPENDED:
            self.suspended_at = time.monotonic()
            self.answered.clear()
        else:
            self.answered.set()
        if state == KazooState.LOST:
            self.session_lost = True  # and our ephemeral znode with it
        self.wakeups.put("check")

    def on_renewed(self, sent, answer):
        try:
            if not all(result is True for result in answer.get()):
                return  # our znode is gone: the watch on it wakes check()
        except Exception:
            return  # no answer: the connection went; the listener reports it
        with self.lock:
            self.confirmed = max(self.confirmed or sent, sent)
        if self.lapsed:
            self.wakeups.put("check")

    def on_change(self, event):
        """The watch on our predecessor, and the one on our own znode."""
        if event.type == "NONE":
            return  # the connection dropped and kazoo forgot the watch: on_state re-checks
        if event.path == self.path:
            if event.type != "DELETED":
                self.rewatch = True   # someone changed its data: the watch is spent
            elif self.leaving:
                return  # our own delete, coming back to us on the way out
            else:
                self.deleted = True
            self.wakeups.put("check")
            return
        # Only this process is woken when its predecessor goes: no herd.
        self.wakeups.put("check")
        log(f"woken: {event.path} {event.type.lower()}")

    def step_down(self, why):
        with self.lock:
            if self.leading:
                self.leading = False
                log(f"no longer leader ({why})")

    @property
    def session_timeout(self):
        return session_timeout(self.zk)

    def lease_end(self):
        """Until when ZooKeeper cannot have expired our session, as far as we know."""
        with self.lock:
            return (self.confirmed or 0.0) + LEASE * self.session_timeout

    def renew_lease(self):
        """Ask ZooKeeper to commit a check of our znode: a write through the
        leader and a quorum that changes nothing and fires no watch."""
        sent = time.monotonic()
        self.next_renewal = sent + self.session_timeout / 3
        transaction = self.zk.transaction()
        transaction.check(self.path, -1)   # -1: any version
        transaction.commit_async().rawlink(lambda answer: self.on_renewed(sent, answer))

    def keep_lease(self):
        """Renew the lease when it is due; step down when it ran out."""
        now = time.monotonic()
        if self.leading and now >= self.lease_end():
            self.lapsed = True
            self.step_down(f"ZooKeeper has not confirmed the session for "
                           f"{now - self.confirmed:.1f} s: cut off from the majority?")
        if self.path and self.zk.state == KazooState.CONNECTED and now >= self.next_renewal:
            self.renew_lease()

    def next_duty(self):
        """Seconds until keep_lease() has something to do."""
        due = [self.lease_end()] if self.leading else []
        if self.path and self.zk.state == KazooState.CONNECTED:
            due.append(self.next_renewal)
        return max(0.01, min(due, default=float("inf")) - time.monotonic())

    def create_node(self):
        data = {"host": socket.gethostname(), "ip": self.ip, "pid": os.getpid(),
                "created": datetime.datetime.now().isoformat(timespec="milliseconds")}
        sent = time.monotonic()
        try:
            self.path = self.zk.create(PREFIX, json.dumps(data).encode(),
                                       ephemeral=True, sequence=True, makepath=True)
        except CONNECTION_ERRORS:
            self.unsure = True  # it may exist, its answer lost with the connection
            raise
        except NoChildrenForEphemeralsError:
            raise UserError(f"{ROOT} is an ephemeral znode (another client's session owns it), "
                            "and ephemeral znodes cannot have children: delete it, or end "
                            "that session")
        except NoAuthError:
            ensure_root(self.zk)  # if it was / that refused us /zkdemo, this says so
            raise refused(self.zk, ROOT, f"create a znode under {ROOT} for a client at {self.ip}")
        with self.lock:
            self.confirmed = sent  # a create is a committed write too
        self.next_renewal = sent + self.session_timeout / 3
        self.following = None
        self.rewatch = True
        log(f"created {self.path}")

    def own_znode(self):
        """After a create whose answer was lost: our znode, found by its owner
        (this session), or None. Without this we could wait behind our own
        orphaned znode until the session ends, as the recipe warns."""
        try:
            names = electors(list_root(self.zk))
        except NoNodeError:
            return None  # someone deleted /zkdemo, and anything of ours in it
        for name in names:
            stat = self.zk.exists(f"{ROOT}/{name}")
            if stat and stat.ephemeralOwner == self.zk.client_id[0]:
                return f"{ROOT}/{name}"
        return None

    def check(self):
        """One round of the election recipe."""
        if self.zk.state != KazooState.CONNECTED:
            return  # nothing can be known until we reconnect
        if self.path is None and self.unsure:
            self.path, self.unsure = self.own_znode(), False
            self.rewatch = self.path is not None
        if self.session_lost:
            self.path, self.session_lost = None, False
        if self.deleted:
            self.step_down(f"another client deleted {self.path}")
            self.path, self.deleted = None, False
        if self.path is None:
            self.create_node()  # the first time, after our session expired, or our znode deleted
        if self.rewatch:
            # Another client (zkCli.sh's delete, say) may delete our znode: then
            # the next in line leads, and we must know it at once.
            stat = self.zk.exists(self.path, watch=self.on_change)
            self.rewatch = False
            if stat is None:
                self.deleted = True
                return self.check()
        while True:
            try:
                nodes = electors(list_root(self.zk))  # anybody else's znodes left out
            except NoNodeError:
                nodes = []  # someone deleted /zkdemo, and our znode with it
            mine = self.path.rsplit("/", 1)[1]
            if mine not in nodes:  # another client deleted it (or all of /zkdemo)
                self.deleted = True
                return self.check()
            position = nodes.index(mine)
            if position == 0:
                return self.become_leader()
            predecessor = f"{ROOT}/{nodes[position - 1]}"
            # Watch only the znode just before ours. If it is already gone,
            # look again: someone else may be before us now.
            if self.zk.exists(predecessor, watch=self.on_change):
                if predecessor != self.following:
                    self.following = predecessor
                    log(f"following {predecessor}")
                return

    def become_leader(self):
        if time.monotonic() >= self.lease_end():
            self.lapsed = True
            return self.renew_lease()   # lead once ZooKeeper confirms the session
        with self.lock:
            if not self.leading and self.zk.state == KazooState.CONNECTED:
                self.leading, self.lapsed = True, False
                log("became leader")

    def leave(self):
        self.leaving = True
        self.step_down("exiting")
        recovering = self.path and self.zk.state != KazooState.CONNECTED
        if recovering and not self.wait_for_zookeeper():
            return
        if self.path and self.zk.state == KazooState.CONNECTED:
            try:
                self.zk.delete(self.path)  # the successor takes over at once
                if recovering:
                    log(f"deleted {self.path}: ZooKeeper answered again, the next in line "
                        "takes over now")
            except NoNodeError:
                pass
            except CONNECTION_ERRORS:
                pass  # closing the session below deletes it, or its expiry will

    def wait_for_zookeeper(self):
        """Exiting while the connection is down: wait for ZooKeeper, but no
        longer than the session could still live. True when our znode can
        still be deleted by us; otherwise say who deletes it, and when."""
        since = self.suspended_at or time.monotonic()
        remaining = since + self.session_timeout - time.monotonic()
        log(f"exiting while the connection is down: waiting up to {max(remaining, 0):.1f} s "
            f"for ZooKeeper, to delete {self.path}")
        if remaining > 0:
            self.answered.wait(remaining)
        if self.session_lost:
            log(f"the session expired meanwhile: ZooKeeper has deleted {self.path} already")
            return False
        if self.zk.state != KazooState.CONNECTED:
            log(f"ZooKeeper did not answer: {self.path} stays until ZooKeeper expires the "
                f"session ({self.session_timeout:g} s after it last heard from us)")
            return False
        return True


def main():
    parser = make_parser(__doc__)
    parser.add_argument("seconds", nargs="?", type=positive_number, metavar="NUMBER",
                        help="how long to stay, in seconds (default: random, 1 to 60)")
    parser.add_argument("--session-timeout", type=positive_number, default=10.0,
                        metavar="SECONDS", help="the session timeout asked for (default 10); "
                        "the servers clamp it to 2 to 20 ticks")
    args = parser.parse_args()
    seconds = args.seconds or random.uniform(1, 60)

    elector = Elector(client_address(args))
    zk = elector.zk = connect(args, session_timeout=args.session_timeout,
                              on_state=elector.on_state)
    log(f"staying {seconds:.1f} s")
    deadline = time.monotonic() + seconds
    try:
        elector.wakeups.put("check")
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                reason = elector.wakeups.get(timeout=min(remaining, elector.next_duty()))
            except queue.Empty:
                reason = None   # time to renew the lease, or to step down
            try:
                elector.keep_lease()
                if reason == "check":
                    elector.check()
            except CONNECTION_ERRORS:
                pass  # the listener has stepped down; we re-check on reconnect
        log("time is up")
    finally:
        elector.leave()
        disconnect(zk)


if __name__ == "__main__":
    run(main)
