#!/usr/bin/env python3
"""Take a lock with kazoo's Lock recipe, hold it, and write to a store
(store.py) once a second while holding it, with a fencing token.

The lock is /zkdemo-locks/NAME. Each contender creates an ephemeral,
sequential znode under it; the lowest holds the lock, and each of the
others watches the one just before its own (the recipe create.py's
election follows by hand; here kazoo.recipe.lock.Lock does it).

A lock held through ZooKeeper ends when the session does, and the holder
may be the last to know: a process frozen for longer than its session
timeout (a long garbage collection, a swapped-out machine, `kill -STOP`)
wakes up believing it still holds the lock, while ZooKeeper has expired
its session, deleted its znode and given the lock to the next in line.
No check closes that gap: this script, like any, looks before it writes
and then writes, and a freeze between the two is all it takes (it waits
for its next turn in between, so the gap is a second wide and easy to hit).

So each write carries a fencing token, and the store refuses any token
lower than one it has already accepted. The token is the czxid of the
holder's lock znode: the zxid of the transaction that created it, a 64-bit
number that every write to the ensemble increases (not the ten-digit
sequence suffix, a signed 32-bit counter that overflows past 2147483647
creates under one lock). The next holder's znode was created later, so
its token is higher. --no-fencing sends no token, and the store has
nothing to check.

It holds the lock NUMBER seconds (default 30), then lets it go; it exits
with 1 when it lost the lock. Ctrl-C while it waits deletes its znode at
once, and the next in line is not kept waiting.
"""

import os
import socket
import threading
import time

from zkdemo import (CONNECTION_ERRORS, ConnectionLoss, KazooState, NoNodeError, UserError,
                    client_address, connect, disconnect, ip_port, log, make_parser,
                    positive_number, run, signals_held)

LOCKS = "/zkdemo-locks"
STORE_TIMEOUT = 60   # seconds to wait for the store's answer (a partition may delay it)


class Lost(Exception):
    """The lock is gone: the session expired, or the store saw a newer holder."""


EXPIRED = "ZooKeeper expired the session, and deleted the lock znode"


class Holder:
    """What the lock holder knows of its session, from kazoo's thread."""

    def __init__(self):
        self.zk = None
        self.state = KazooState.CONNECTED
        self.changed = threading.Condition()
        self.node = None       # the lock znode, once we hold the lock
        self.session = None    # the session that created it (its ephemeralOwner)
        self.deleted = False   # a watch said it was deleted (by whom: look() finds out)
        self.expired = False   # the session expired while we held the lock (kazoo may be in
                               # a new session since: the state alone would not say)

    def on_state(self, state):
        with self.changed:
            self.state = state
            self.expired = self.expired or (state == KazooState.LOST and self.node is not None)
            self.changed.notify_all()

    def on_node(self, event):
        if event.type == "DELETED":
            with self.changed:
                self.deleted = True
                self.changed.notify_all()

    def check(self, until):
        """True while the lock is still ours; raise Lost when it is not.
        With the connection down, wait (until `until`, then False) for
        ZooKeeper's word: the session may be alive, or expired."""
        said = False
        while True:
            with self.changed:
                if self.state == KazooState.SUSPENDED and not said:
                    log("not writing until ZooKeeper answers: the lock may be lost")
                    said = True
                while self.state == KazooState.SUSPENDED and time.monotonic() < until:
                    self.changed.wait(until - time.monotonic())
                state, expired = self.state, self.expired
            if expired:
                raise Lost(EXPIRED)
            if state != KazooState.CONNECTED:
                return False
            try:   # look at our znode again, and watch it (kazoo drops watches with the connection)
                self.look()
            except CONNECTION_ERRORS:
                # The connection went under us: kazoo is about to say so.
                with self.changed:
                    self.changed.wait(max(0.0, min(1.0, until - time.monotonic())))
                if time.monotonic() >= until:
                    return False
                continue
            if said:
                log("the lock is still ours: the same session, and its znode is there")
            return True

    def look(self):
        """Read our lock znode and watch it; raise Lost unless it is there and
        is still our session's (after an expiry kazoo goes on in a new one).
        A watch's `deleted` alone does not say who deleted it: ZooKeeper does
        when it expires the session, and a frozen holder reads that event on
        waking, before kazoo hears of the expiry. So this read decides."""
        found = self.zk.exists(self.node, watch=self.on_node)
        now = self.zk.client_id   # the session kazoo is in; None while it reconnects
        if now is None:
            raise ConnectionLoss()   # check() waits for kazoo's word
        if self.session is None:   # the first look, right after acquire(): it is ours
            self.session = found.ephemeralOwner if found else now[0]
        if now[0] != self.session or (found and found.ephemeralOwner != self.session):
            raise Lost(EXPIRED)   # kazoo has gone on in a new session
        if found is None:   # our session is alive: someone else deleted it
            raise Lost(f"another client deleted {self.node}")
        return found


class Store:
    """The connection to store.py: one line out, one answer back."""

    def __init__(self, address):
        self.where = where = "%s:%d" % address
        try:
            self.sock = socket.create_connection(address, timeout=STORE_TIMEOUT)
        except ConnectionRefusedError:
            raise UserError(f"nothing listens at {where}: start store.py there first "
                            f"(store.py --listen {where})")
        except OSError as e:
            raise UserError(f"cannot reach the store at {where}: {e.strerror or e}")
        self.answers = self.sock.makefile("rb")

    def write(self, token, text):
        token_word = "-" if token is None else f"0x{token:x}"
        try:
            self.sock.sendall(f"WRITE {token_word} {text}\n".encode())
            answer = self.answers.readline().decode(errors="replace").split()
        except socket.timeout:
            raise UserError(f"the store at {self.where} did not answer within {STORE_TIMEOUT} s")
        except OSError as e:
            answer = [f"({e.strerror})"]
        if not answer or answer[0] not in ("ACCEPTED", "REJECTED"):
            raise UserError(f"the store at {self.where} went away mid-write "
                            f"{' '.join(answer) or '(it closed the connection)'}: was it stopped?")
        return answer[0] == "ACCEPTED", answer[1]


def main():
    parser = make_parser(__doc__)
    parser.add_argument("seconds", nargs="?", type=positive_number, default=30.0,
                        metavar="NUMBER", help="how long to hold the lock (default 30)")
    parser.add_argument("--name", default="demo", help="the lock: /zkdemo-locks/NAME "
                        "(default demo)")
    parser.add_argument("--store", required=True, type=ip_port, metavar="IP:PORT",
                        help="where store.py listens (store.py --listen IP:PORT)")
    parser.add_argument("--no-fencing", action="store_true",
                        help="send no fencing token: the store accepts every write")
    parser.add_argument("--session-timeout", type=positive_number, default=10.0,
                        metavar="SECONDS", help="the session timeout asked for (default 10); "
                        "the servers clamp it to 2 to 20 ticks")
    args = parser.parse_args()
    if "/" in args.name or args.name in ("", ".", ".."):
        parser.error(f"--name {args.name!r}: one znode name, without /")

    me = f"{client_address(args)} pid {os.getpid()}"
    store = Store(args.store)   # before the lock: nothing to undo if the store is not there
    holder = Holder()
    zk = connect(args, session_timeout=args.session_timeout, on_state=holder.on_state,
                 on_client=lambda client: setattr(holder, "zk", client))
    lock = zk.Lock(f"{LOCKS}/{args.name}", me)
    try:
        log(f"{me}: waiting for the lock {lock.path}")
        lock.acquire()
        holder.node = f"{lock.path}/{lock.node}"
        # One read: our znode's czxid (the zxid that created it) and a watch on it.
        token = holder.look().czxid
        if args.no_fencing:
            log(f"holding the lock: {holder.node}, no fencing token (--no-fencing)")
            token = None
        else:
            log(f"holding the lock: {holder.node}, fencing token 0x{token:x} (its czxid)")
        deadline = time.monotonic() + args.seconds
        next_write, writes = time.monotonic() + 1, 0
        while next_write <= deadline:
            if not holder.check(until=deadline):   # look...
                break
            time.sleep(max(0.0, next_write - time.monotonic()))
            writes += 1           # ...then write: a freeze in between goes unseen
            accepted, highest = store.write(token, f"{me} write {writes}")
            if not accepted:
                log(f"write {writes}: REJECTED: the store has seen fencing token {highest}, "
                    f"newer than ours (0x{token:x})")
                raise Lost("it has passed to a newer holder")
            log(f"write {writes}: accepted")
            next_write = max(next_write + 1, time.monotonic() + 1)
        with holder.changed:   # the rest of its time: not writing, still listening
            holder.changed.wait_for(lambda: holder.expired or holder.deleted,
                                    max(0.0, deadline - time.monotonic()))
        if holder.expired or holder.deleted:   # which of the two: check() finds out
            holder.check(until=time.monotonic() + args.session_timeout)
        if zk.state != KazooState.CONNECTED:
            log("time is up, with the connection down: the lock may be gone already")
            return 1
        log("time is up: letting go of the lock")
        return 0
    except Lost as e:
        log(f"lost the lock: {e}")
        return 1
    except NoNodeError:
        raise UserError(f"the lock znode went while it was being taken: another client "
                        f"deleted {lock.path}")
    finally:
        with signals_held():   # a second Ctrl-C waits: the session is closed first
            release(zk, lock)
            disconnect(zk)


def release(zk, lock):
    """Delete our lock znode, if it is there, so the next in line goes on at
    once. Interrupted while waiting, we may have a znode without holding the
    lock: kazoo's release() would leave that one."""
    if lock.node is None or zk.state != KazooState.CONNECTED:
        return   # closing the session deletes it, or ZooKeeper's expiry does
    try:
        zk.delete(f"{lock.path}/{lock.node}")
        if not lock.is_acquired:
            log(f"stopped waiting: deleted {lock.path}/{lock.node}")
    except NoNodeError:
        pass
    except CONNECTION_ERRORS:
        pass


if __name__ == "__main__":
    run(main)
