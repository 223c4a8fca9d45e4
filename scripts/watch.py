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
znodes created and deleted in between, which no read could show.

When its server goes away, kazoo reconnects to another one in --hosts; the
script then reads everything again and reports what it missed.
"""

import queue

from zkdemo import (CONNECTION_ERRORS, ROOT, KazooState, NoAuthError, NoNodeError, connect,
                    disconnect, ensure_root, log, make_parser, run, sequence_number)


class Watcher:
    def __init__(self):
        self.zk = None
        self.known = {}           # path -> (version, data) as last printed
        self.child_version = None  # /zkdemo's cversion at the last read
        self.deleted_unseen = 0    # znodes listed, then gone before get()
        self.disconnected = False
        self.events = queue.Queue()

    # kazoo calls these from its own thread: they only queue work for main().
    # When the connection drops, kazoo forgets every watch and calls it once with
    # an event of type NONE; the re-read after reconnecting sets them anew.
    def on_children(self, event):
        if event.type != "NONE":
            self.events.put(("children", None))

    def on_data(self, event):
        if event.type != "NONE":
            self.events.put(("data", event.path))

    def on_state(self, state):
        if state != KazooState.CONNECTED:
            self.disconnected = True
        elif self.disconnected:
            self.disconnected = False
            self.events.put(("reconnected", None))

    def read_children(self, verb="created", label=""):
        """Read the child list (re-arming its watch) and report what changed."""
        children, stat = self.zk.get_children(ROOT, watch=self.on_children, include_data=True)
        paths = {f"{ROOT}/{name}" for name in children}
        added = sorted(paths - self.known.keys(), key=sequence_number)
        removed = sorted(self.known.keys() - paths, key=sequence_number)
        for path in removed:
            del self.known[path]
            log(f"deleted {path}{label}")
        vanished = 0
        # Ask for all of them at once and then take the answers in order: one
        # round trip for the lot rather than one per znode.
        answers = [(path, self.zk.get_async(path, watch=self.on_data)) for path in added]
        for path, answer in answers:
            if not self.read_data(path, verb, label, answer):
                log(f"{verb} {path}, deleted before it could be read{label}")
                vanished += 1
        if self.child_version is not None:
            # cversion counts every create and delete of a child. Deletions of
            # znodes that vanished at the last read are counted in it by now.
            unseen = (stat.cversion - self.child_version - len(added) - len(removed)
                      - self.deleted_unseen)
            if unseen > 0:
                log(f"{unseen} child change{'s' if unseen > 1 else ''} folded: created "
                    f"and deleted between two reads{label}")
        self.deleted_unseen = vanished
        self.child_version = stat.cversion

    def read_data(self, path, verb="updated", label="", answer=None):
        """Read one znode's data (re-arming its watch) and report it if new.
        False when the znode is gone (the child-list watch reports that).
        `answer`: the znode's get_async(), when it was asked for already."""
        try:
            data, stat = (answer or self.zk.get_async(path, watch=self.on_data)).get()
            text = data.decode(errors="replace")
        except NoNodeError:
            return False
        except NoAuthError:
            # Its ACL does not let us read it; exists() needs no permission, and
            # still watches the znode and tells its version.
            stat = self.zk.exists(path, watch=self.on_data)
            if stat is None:
                return False
            text = "(data not readable here: NoAuth)"
        previous = self.known.get(path)
        self.known[path] = (stat.version, text)
        if previous is None:
            times = f"{stat.version} time{'s' if stat.version != 1 else ''}"
            note = f" (updated {times} before this read)" if stat.version else ""
            log(f"{verb} {path} {text}{note}{label}".rstrip())
        elif stat.version != previous[0]:
            folded = stat.version - previous[0] - 1
            note = f" ({folded + 1} updates folded into one notification)" if folded else ""
            log(f"updated {path} {text}{note}{label}")
        return True

    def reread_everything(self):
        """After a reconnect: compare the whole tree with what we knew."""
        self.read_children(label="  (missed while disconnected)")
        for path in list(self.known):
            self.read_data(path, label="  (missed while disconnected)")


def main():
    args = make_parser(__doc__).parse_args()
    watcher = Watcher()
    zk = watcher.zk = connect(args, on_state=watcher.on_state)
    try:
        ensure_root(zk)
        log(f"watching {ROOT}; Ctrl-C to stop")
        watcher.read_children(verb="present")
        while True:
            kind, path = watcher.events.get()
            try:
                if kind == "children":
                    watcher.read_children()
                elif kind == "data":
                    watcher.read_data(path)
                else:
                    watcher.reread_everything()
            except CONNECTION_ERRORS:
                pass  # reported by the listener; everything is re-read on reconnect
    finally:
        disconnect(zk)


if __name__ == "__main__":
    run(main)
