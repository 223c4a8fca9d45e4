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
exactly one process is woken up to look again (no "herd" of watchers).
kazoo's kazoo.recipe.election.Election does the same through its Lock
recipe; this script does it by hand to show how it works.

It stays NUMBER seconds (random 1 to 60 when omitted), then deletes its znode
and exits. At any moment it is in one of six states:

  JOINING     connected, without a znode: creates one ("created <znode>")
  FOLLOWING   a lower znode exists: watches the one just before its own
              ("following <znode>"; "woken: ..." when it goes)
  CONFIRMING  its znode is the lowest, but ZooKeeper has not yet confirmed
              that its session outlives this moment: waits for that
  LEADING     the lowest znode, with the session confirmed ("became leader")
  OFFLINE     the connection is down: the session, and so the znode, may or
              may not exist ("no longer leader (connection suspended)")
  LEAVING     time is up, or it was stopped: deletes its znode and exits

kazoo drops every watch when the connection goes down, so entering a
connected state from OFFLINE sets both watches again: on the znode before
its own, and on its own znode, since another client may delete it
(zkCli.sh's `delete`): then it says "no longer leader (another client
deleted ...)" and joins again at the back.

A connection that stays up is not proof enough. A server cut off from the
majority still answers its clients until it notices, about syncLimit ticks
later, while the majority may already have expired the session and handed
leadership on. So it holds a lease: every third of the session timeout it
asks ZooKeeper to commit a write that changes nothing (a transaction that
only checks its znode). The lease counts from the one before the last
committed write, or from the session's creation (see Lease), and ends 0.9 of a
session timeout later; a leader whose lease runs out says "no longer leader"
before ZooKeeper could expire its session, and goes back to CONFIRMING.

Stopped while its connection is down, it waits (at most until the session
would have expired) for ZooKeeper, to delete its znode so the next in line
takes over at once; it says whether it did, or whether the znode stays until
ZooKeeper expires the session.
"""

import json
import os
import queue
import random
import socket
import time

from zkdemo import (CONNECTION_ERRORS, ELECTION_PREFIX, ROOT, ConnectionLoss, KazooState,
                    NoAuthError, NoChildrenForEphemeralsError, NoNodeError, UserError,
                    client_address, connect, disconnect, electors, ensure_root,
                    log, make_parser, new_session_sent, positive_number, refused, run,
                    session_timeout, utc_now)

PREFIX = f"{ROOT}/{ELECTION_PREFIX}"
LEASE = 0.9   # of the session timeout: what is left is the margin for clocks and ticks
JOINING, FOLLOWING, CONFIRMING, LEADING, OFFLINE, LEAVING = (
    "JOINING", "FOLLOWING", "CONFIRMING", "LEADING", "OFFLINE", "LEAVING")


class Lease:
    """Until when ZooKeeper cannot have expired our session.

    ZooKeeper's leader expires a session a session timeout after it last
    heard of it. A committed write proves the session was alive, but a
    follower passes our writes on without telling the leader: it reports the
    sessions it heard from in its answer to the leader's next ping, every
    half tick. So a committed write vouches for the one before it, if the
    two reached the follower half a tick apart: the later one was sent a
    quarter of the session timeout after the answer to the earlier one. Then
    the lease starts at the earlier one's send time; otherwise the start
    stays where it was. A new session counts at once: the leader commits it
    with a quorum. docs/reliability.md has the argument, with ZooKeeper's
    source."""

    def __init__(self):
        self.start = None      # the leader had heard from the session after this
        self.last = None       # (sent, answered) of the last committed write

    def connected(self, sent):
        self.start = max(self.start or sent, sent)

    def committed(self, sent, answered, timeout):
        if self.last is not None and sent - self.last[1] >= timeout / 4:
            self.start = max(self.start or self.last[0], self.last[0])
        if self.last is None or sent > self.last[0]:
            self.last = (sent, answered)

    def heard(self):
        """When the last committed write (or the new session) was sent."""
        return max(t for t in (self.start, self.last and self.last[0]) if t is not None)

    def end(self, timeout):
        return (self.start or float("-inf")) + LEASE * timeout


class Elector:
    def __init__(self, ip):
        self.zk = None
        self.ip = ip
        self.state = OFFLINE      # until kazoo says it is connected
        self.path = None          # our znode, once created
        self.following = None     # the znode we watch, while FOLLOWING
        self.unsure = False       # a create's answer was lost: it may exist
        self.lease = Lease()
        self.next_renewal = 0.0   # when to ask ZooKeeper to confirm the session again
        self.offline_since = None
        self.events = queue.Queue()  # everything the main loop acts on, in order

    # kazoo calls these three from its own thread: they only queue an event.
    def on_state(self, state):
        # The session it is about: by the time the event is handled, kazoo may
        # be in another one (LOST, then a new session, already queued).
        self.events.put(("connection", (state, self.zk.client_id, new_session_sent(self.zk)
                                        if state == KazooState.CONNECTED else None)))

    def on_change(self, event):
        """A watch fired: on our predecessor, or on our own znode."""
        if event.type != "NONE":   # NONE: kazoo dropped it with the connection
            self.events.put(("watch", event))

    def on_renewed(self, sent, path, answer):
        answered = time.monotonic()
        try:
            results = answer.get()
        except Exception:
            return  # no answer: the connection went, and its event follows
        self.events.put(("renewed", (sent, answered, path, results)))

    # The main loop's side: one event at a time.
    def handle(self, kind, what):
        if kind == "connection":
            state, session, new_session = what
            if state == KazooState.CONNECTED:
                # Only the connection kazoo has now: an older one is followed
                # in the queue by the events that ended it.
                if self.state == OFFLINE and self.zk.connected and session == self.zk.client_id:
                    if new_session:
                        self.lease.connected(new_session)
                    self.join()
                return
            self.go_offline(f"connection {state.lower()}")
            if state == KazooState.LOST:
                self.path, self.lease = None, Lease()   # our znode went with the session
        elif self.state == OFFLINE or self.path is None:
            return  # whatever it was, joining again looks at everything anew
        elif kind == "renewed":
            sent, answered, path, results = what
            if path != self.path:
                return
            if all(result is True for result in results):
                self.lease.committed(sent, answered, session_timeout(self.zk))
                if self.state == CONFIRMING and self.lease_left() > 0:
                    self.lead()
            elif isinstance(results[0], NoNodeError):
                self.znode_gone()   # the same news as our own watch brings
        elif what.path == self.path:
            if what.type == "DELETED":
                self.znode_gone()
            elif not self.watch_own():   # its data changed: the watch is spent
                self.znode_gone()
        else:
            log(f"woken: {what.path} {what.type.lower()}")
            self.elect()

    def duties(self):
        """What time alone asks for: give up a lease that ran out, renew it when due."""
        now = time.monotonic()
        if self.state == LEADING and self.lease_left() <= 0:
            self.lease_ran_out()
        if self.path and self.state not in (OFFLINE, LEAVING) and now >= self.next_renewal:
            self.renew()

    def lease_ran_out(self):
        """Wait for ZooKeeper to confirm the session again; say so if we led."""
        if self.state == LEADING:
            log(f"no longer leader (ZooKeeper has not confirmed the session for "
                f"{time.monotonic() - self.lease.heard():.1f} s: cut off from the majority?)")
        self.state = CONFIRMING   # a "renewed" event brings us back to lead()

    def next_duty(self):
        """Seconds until duties() has something to do."""
        due = [time.monotonic() + self.lease_left()] if self.state == LEADING else []
        if self.path and self.state not in (OFFLINE, LEAVING):
            due.append(self.next_renewal)
        return max(0.01, min(due, default=float("inf")) - time.monotonic())

    def lease_left(self):
        return self.lease.end(session_timeout(self.zk)) - time.monotonic()

    def ask(self, operation, *args, **kwargs):
        """Wait for ZooKeeper's answer to one of kazoo's *_async calls. kazoo
        holds a request made while the connection is down until it is back;
        we must not wait for that with the news of it in our queue."""
        answer = operation(*args, **kwargs)
        if not self.zk.connected:
            raise ConnectionLoss()
        return answer.get()

    def go_offline(self, why):
        if self.state == LEADING:
            log(f"no longer leader ({why})")
        if self.state != OFFLINE:
            self.state, self.following = OFFLINE, None
            self.offline_since = time.monotonic()

    def join(self):
        """Connected again (or for the first time): find or make our znode,
        set the watch on it, and take our place in the election."""
        self.state = JOINING
        if self.path is None and self.unsure:
            self.path, self.unsure = self.own_znode(), False
        if self.path is not None and not self.watch_own():
            self.path = None   # another client deleted it meanwhile
        if self.path is None:
            self.create_node()
        self.elect()

    def watch_own(self):
        """Watch our znode: another client may delete it. False if it is gone."""
        return self.ask(self.zk.exists_async, self.path, watch=self.on_change) is not None

    def create_node(self):
        data = {"host": socket.gethostname(), "ip": self.ip, "pid": os.getpid(),
                "created": utc_now().isoformat(timespec="milliseconds")}
        sent = time.monotonic()
        try:
            self.path = self.ask(self.zk.create_async, PREFIX, json.dumps(data).encode(),
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
        # A create is a committed write too.
        self.lease.committed(sent, time.monotonic(), session_timeout(self.zk))
        self.next_renewal = sent + session_timeout(self.zk) / 3
        log(f"created {self.path}")
        if not self.watch_own():
            self.znode_gone()

    def own_znode(self):
        """After a create whose answer was lost: our znode, found by its owner
        (this session), or None. Without this we could wait behind our own
        orphaned znode until the session ends, as the recipe warns."""
        session = self.session()
        for name in self.candidates():
            stat = self.ask(self.zk.exists_async, f"{ROOT}/{name}")
            if stat and stat.ephemeralOwner == session:
                return f"{ROOT}/{name}"
        return None

    def session(self):
        client_id = self.zk.client_id
        if client_id is None:
            raise ConnectionLoss()
        return client_id[0]

    def candidates(self):
        """The electors' znode names, lowest first; anybody else's left out."""
        try:
            return electors(self.ask(self.zk.get_children_async, ROOT))
        except NoNodeError:
            return []   # someone deleted /zkdemo, and every znode in it
        except NoAuthError:
            raise refused(self.zk, ROOT, f"list {ROOT}")

    def znode_gone(self):
        """Another client deleted our znode (or all of /zkdemo): join again at the back."""
        if self.state == LEADING:
            log(f"no longer leader (another client deleted {self.path})")
        self.path, self.following = None, None
        self.join()

    def elect(self):
        """One round of the election recipe: lead, or follow the znode before ours."""
        while True:
            nodes = self.candidates()
            mine = self.path.rsplit("/", 1)[1]
            if mine not in nodes:
                return self.znode_gone()
            position = nodes.index(mine)
            if position == 0:
                return self.lead()
            predecessor = f"{ROOT}/{nodes[position - 1]}"
            # Watch only the znode just before ours. If it is already gone,
            # look again: someone else may be before us now.
            stat = self.ask(self.zk.exists_async, predecessor, watch=self.on_change)
            if stat and stat.ephemeralOwner == self.session():
                # Ours: a create whose answer was lost, and that the server we
                # asked afterwards did not have yet. Never wait behind it.
                self.ask(self.zk.delete_async, predecessor)
                log(f"deleted {predecessor}: an earlier create of ours whose answer was lost")
                continue
            if stat:
                self.state = FOLLOWING
                if predecessor != self.following:
                    self.following = predecessor
                    log(f"following {predecessor}")
                return

    def lead(self):
        if self.lease_left() <= 0:
            self.lease_ran_out()
        elif self.state != LEADING:
            self.state, self.following = LEADING, None
            log("became leader")

    def renew(self):
        """Ask ZooKeeper to commit a check of our znode: a write through the
        leader and a quorum that changes nothing and fires no watch."""
        sent, path = time.monotonic(), self.path
        self.next_renewal = sent + session_timeout(self.zk) / 3
        transaction = self.zk.transaction()
        transaction.check(path, -1)   # -1: any version
        transaction.commit_async().rawlink(lambda answer: self.on_renewed(sent, path, answer))

    def leave(self):
        if self.state == LEADING:
            log("no longer leader (exiting)")
        offline = self.state == OFFLINE or not self.zk.connected
        self.state = LEAVING
        if self.path is None or (offline and not self.wait_for_zookeeper()):
            return
        try:
            self.ask(self.zk.delete_async, self.path)  # the successor takes over at once
            if offline:
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
        timeout = session_timeout(self.zk)
        deadline = (self.offline_since or time.monotonic()) + timeout
        log(f"exiting while the connection is down: waiting up to "
            f"{max(deadline - time.monotonic(), 0):.1f} s for ZooKeeper, to delete {self.path}")
        state = self.zk.state
        while state == KazooState.SUSPENDED and (left := deadline - time.monotonic()) > 0:
            try:
                kind, what = self.events.get(timeout=left)
            except queue.Empty:
                break
            if kind == "connection":
                state = self.zk.state   # now, not when the event was queued
        if state == KazooState.LOST:
            log(f"the session expired meanwhile: ZooKeeper has deleted {self.path} already")
            return False
        if state != KazooState.CONNECTED:
            log(f"ZooKeeper did not answer: {self.path} stays until ZooKeeper expires the "
                f"session ({timeout:g} s after it last heard from us)")
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
    zk = connect(args, session_timeout=args.session_timeout, on_state=elector.on_state,
                 on_client=lambda client: setattr(elector, "zk", client))
    log(f"staying {seconds:.1f} s")
    deadline = time.monotonic() + seconds
    try:
        # kazoo's first CONNECTED is already in the queue: handling it joins.
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                event = elector.events.get(timeout=min(remaining, elector.next_duty()))
            except queue.Empty:
                event = None    # time to renew the lease, or to give it up
            try:
                elector.duties()
                if event:
                    elector.handle(*event)
            except CONNECTION_ERRORS:
                pass  # the connection's own event is on its way, and says what to do
        log("time is up")
    finally:
        elector.leave()
        disconnect(zk)


if __name__ == "__main__":
    run(main)
