#!/usr/bin/env python3
"""Watch /zkdemo and print every change until Ctrl-C.

It lists what is there, then prints one line per change:

  created <path> <data>     a znode appeared under /zkdemo
  updated <path> <data>     a znode's data changed
  deleted <path>            a znode went

A ZooKeeper watch fires once: it says *that* something changed, and the
script must read again (setting a new watch) to see *what*. Changes made
between the notification and that read arrive folded into one. The znode's
version counts every update, so when it jumped by more than one the line says
how many updates were folded; the parent's child version does the same for
znodes created and deleted in between, which no read could show. A znode
updated and then deleted before the read is reported as both ("updated
<path>, deleted before it could be read", then "deleted <path>"). A znode
deleted and made again under the same name is told apart by the zxid of the
transaction that created it (its czxid): "deleted <path>", then "created
<path> <data>".

When its server goes away, kazoo reconnects to another one in --hosts; the
script then reads everything again and reports what it missed. A znode it
lists then and finds gone when it reads it a moment later may have been
updated meanwhile, unseen by any read: "deleted <path> (updates just before it
may be unseen)".

/zkdemo itself may go (another client deletes it, with everything under it)
or not be there yet: watch.py then says so, reports each znode it saw go,
and waits with an exists() watch until /zkdemo is back, to report it and
whatever is created under it from then on. It runs until Ctrl-C (exit 130)
or SIGTERM (143); it exits 1 only when it cannot reach ZooKeeper, loses the
connection for good, or may not read /zkdemo (the error names its ACL).
"""

import queue

from zkdemo import (CONNECTION_ERRORS, ROOT, KazooState, NoAuthError, NoNodeError, connect,
                    data_text, disconnect, in_sequence, list_root, log, make_parser, run)

UNSEEN = " (updates just before it may be unseen)"
# A znode whose ACL does not let us read it. ZooKeeper (Debian's 3.8.0 seen)
# then tells us nothing through its data watch, not even its delete: the
# child list must.
NOT_READABLE = "(data not readable here: NoAuth)"


class Watcher:
    def __init__(self):
        self.zk = None
        self.known = {}           # path -> (version, data, czxid) as last printed
        self.gone = {}            # path -> made again: known znodes a listing found deleted
                                  # (or deleted and made again); their data watch is to tell
        self.child_version = None  # /zkdemo's cversion at the last listing
        self.told = 0              # child changes told since then that the next listing counts
        self.root_exists = None    # None until the first read
        self.root_czxid = None     # the zxid that created the /zkdemo we know
        self.disconnected = False
        self.listed = False        # the first listing is complete
        self.events = queue.Queue()

    # kazoo calls these from its own thread: they only queue work for main().
    # When the connection drops, kazoo forgets every watch and calls it once with
    # an event of type NONE; the re-read after reconnecting sets them anew.
    def on_children(self, event):
        if event.type != "NONE":
            self.events.put(("children", None))

    def on_data(self, event):
        if event.type != "NONE":
            self.events.put((event.type.lower(), event.path))

    def on_root(self, event):
        if event.type == "CREATED":
            self.events.put(("children", None))

    def on_state(self, state):
        if state != KazooState.CONNECTED:
            self.disconnected = True
        elif self.disconnected:
            self.disconnected = False
            self.events.put(("reconnected", None))

    def read_children(self, verb="created", label="", watched=True):
        """Read the child list (re-arming its watch) and report what changed.
        A znode we know that the list no longer holds (or holds made anew) is
        left to its data watch, which fires on the delete, and on an update
        before it first: so the two are told in order. After a reconnect
        (`watched` False) kazoo has dropped every watch: the list tells."""
        try:
            children, stat = list_root(self.zk, watch=self.on_children, include_data=True)
        except NoNodeError:
            return self.root_missing(label)
        if self.root_czxid not in (None, stat.czxid):
            self.report_root_gone(label)  # and made again, between two of our reads
        if self.root_exists is False:
            # A new /zkdemo, whose child version starts from 0.
            log(f"created {ROOT}{label}")
            self.child_version, self.told = 0, 0
        self.root_exists, self.root_czxid = True, stat.czxid
        told, self.told = self.told, 0
        # Until this listing is finished there is nothing to count from: a
        # listing cut short by a lost connection leaves the next one to count
        # no folds rather than count again what was already told.
        before, self.child_version = self.child_version, None
        paths = {f"{ROOT}/{name}" for name in children}
        added = in_sequence(paths - self.known.keys())
        removed = in_sequence(self.known.keys() - paths - self.gone.keys())
        for path in removed:
            if watched and self.known[path][1] != NOT_READABLE:
                self.gone[path] = False
            else:
                del self.known[path]
                log(f"deleted {path}{label}")
        # Ask for all of them at once and then take the answers in order: one
        # round trip for the lot rather than one per znode.
        answers = [(path, self.zk.get_async(path, watch=self.on_data)) for path in added]
        for path, answer in answers:
            self.read_new(path, verb, label, answer)
        if before is not None:
            # cversion counts every create and delete of a child (ZooKeeper
            # keeps the creates, c, and reports 2c minus the children there
            # now). Say it went from 7 to 11; this list shows 1 znode created
            # and 1 gone, and 0 were told since the last one (such as one that
            # vanished before we could read it, whose delete counts here):
            # 11 - 7 - 1 - 1 - 0 = 2 changes no read could show, "2 child
            # changes folded" (one znode created and deleted in between).
            unseen = stat.cversion - before - len(added) - len(removed) - told
            if unseen > 0:
                unseen -= 2 * self.find_made_again(paths, stat.pzxid, label, watched)
            if unseen > 0:
                log(f"{unseen} child change{'s' if unseen > 1 else ''} folded: created "
                    f"and deleted between two reads{label}")
        self.child_version = stat.cversion

    def find_made_again(self, paths, pzxid, label, watched):
        """Known znodes this listing holds, but deleted and made again before
        it: the new one's czxid differs and is at most the listing's pzxid
        (the zxid of /zkdemo's last child change). Two changes each."""
        listed = in_sequence((self.known.keys() & paths) - self.gone.keys())
        answers = [(path, self.zk.exists_async(path)) for path in listed]
        found = 0
        for path, answer in answers:
            stat = answer.get()
            if not stat or stat.czxid == self.known[path][2] or stat.czxid > pzxid:
                continue   # the one we know, or changed after this listing
            found += 1
            if watched and self.known[path][1] != NOT_READABLE:
                self.gone[path] = True
            else:
                del self.known[path]
                log(f"deleted {path}{label}")
                self.read_new(path, "created", label)
        return found

    def read_new(self, path, verb, label, answer=None):
        """Read and report a znode that we did not know."""
        if not self.read_data(path, verb, label, answer):
            log(f"{verb} {path}, deleted before it could be read{label}")
            self.told += 1   # its delete: the next listing counts it

    def report_root_gone(self, label, then=""):
        """/zkdemo went (or never was): so did every znode we knew under it."""
        for path in in_sequence(self.known):
            log(f"deleted {path}{label}")
        self.known.clear()
        self.gone.clear()
        if self.root_exists is not False:
            log(f"{ROOT} {'is gone' if self.root_exists else 'does not exist yet'}{label}{then}")
        self.root_exists, self.root_czxid = False, None

    def root_missing(self, label):
        """/zkdemo is not there: report it, and watch for its return."""
        self.report_root_gone(label, then="; waiting for it to be created")
        # exists() sets a watch also on a znode that is not there: it fires on
        # the create. If it is there by now, read it at once instead.
        if self.zk.exists(ROOT, watch=self.on_root):
            self.read_children(label=label)

    def read_data(self, path, verb="updated", label="", answer=None):
        """Read one znode's data (re-arming its watch) and report it if new.
        False when the znode we knew there is gone (a znode made since under
        its name, with another czxid, is not that one).
        `answer`: the znode's get_async(), when it was asked for already."""
        try:
            data, stat = (answer or self.zk.get_async(path, watch=self.on_data)).get()
            text = data_text(data)
        except NoNodeError:
            return False
        except NoAuthError:
            # Its ACL does not let us read it; exists() needs no permission, and
            # still watches the znode and tells its version.
            stat = self.zk.exists(path, watch=self.on_data)
            if stat is None:
                return False
            text = NOT_READABLE
        previous = self.known.get(path)
        if previous and previous[2] != stat.czxid:
            return False
        self.known[path] = (stat.version, text, stat.czxid)
        if previous is None:
            times = f"{stat.version} time{'s' if stat.version != 1 else ''}"
            note = f" (updated {times} before this read)" if stat.version else ""
            log(f"{verb} {path} {text}{note}{label}")
        elif stat.version != previous[0]:
            folded = stat.version - previous[0] - 1
            note = f" ({folded + 1} updates folded into one notification)" if folded else ""
            log(f"updated {path} {text}{note}{label}")
        return True

    def data_changed(self, path, kind):
        """A znode's data watch fired: it was updated ("changed") or deleted."""
        if self.read_data(path):
            return   # still the one we know ("deleted": a notification about an older one)
        if kind == "changed":
            # Told of an update, then the znode went before we could read it:
            # the update is reported, its data never seen.
            log(f"updated {path}, deleted before it could be read")
        self.report_deleted(path)

    def report_deleted(self, path, note=""):
        """The znode we knew at `path` is gone. If a listing found that, it
        counted the delete, and the create of one made since, reported here."""
        del self.known[path]
        log(f"deleted {path}{note}")
        if path not in self.gone:
            self.told += 1   # the next listing counts this delete
        elif self.gone.pop(path):
            self.read_new(path, "created", "")

    def list_everything(self):
        """The first listing, or, after a reconnect, the whole tree compared
        with what we knew. A listing that a lost connection cut short is
        finished as it began: what was there already is `present`."""
        label = "  (missed while disconnected)" if self.listed else ""
        for path in list(self.gone):   # their data watches went with the connection
            self.report_deleted(path, UNSEEN)
        known = list(self.known)   # read again below: the listing reads only new ones
        self.read_children("created" if self.listed else "present", label, watched=False)
        for path in known:
            # Listed, and gone when read: any update just before the delete,
            # made while we were away, no read could show.
            if path in self.known and not self.read_data(path, label=label):
                self.report_deleted(path, UNSEEN)
        self.listed = True


def main():
    args = make_parser(__doc__).parse_args()
    watcher = Watcher()
    zk = watcher.zk = connect(args, on_state=watcher.on_state)
    try:
        log(f"watching {ROOT}; Ctrl-C to stop")
        # The first listing is queued as every later read is: when the
        # connection drops during it, it is done again on reconnecting.
        watcher.events.put(("reconnected", None))
        while True:
            kind, path = watcher.events.get()
            try:
                if kind == "reconnected" or (kind == "children" and not watcher.listed):
                    watcher.list_everything()
                elif kind == "children":
                    watcher.read_children()
                elif path in watcher.known:   # else it was reported deleted already
                    watcher.data_changed(path, kind)
            except CONNECTION_ERRORS:
                pass  # reported by the listener; everything is re-read on reconnect
    finally:
        disconnect(zk)


if __name__ == "__main__":
    run(main)
