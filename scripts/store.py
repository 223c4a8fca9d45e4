#!/usr/bin/env python3
"""A small storage service: the resource that lock.py's lock protects.

It listens on TCP, so that lock holders on other machines can reach it, and
takes one write per line:

  WRITE TOKEN TEXT    TOKEN: the writer's fencing token (a number, 0x... for
                      hexadecimal), or - for none

It keeps the highest token it has been sent, and refuses a write whose token
is lower: the writer's lock was taken over by a holder with a newer token,
whatever the writer itself believes. A write without a token it takes as it
comes, and says so: it has nothing to check. It answers each write with
ACCEPTED HIGHEST, REJECTED HIGHEST or ERROR WHY, and prints one line for it.

The writes it accepted go to a file (--file, new at each start), one line
each, in the order it accepted them: who wrote what, after whom. It keeps the
highest token in memory only; a store that restarts has forgotten it.

Its lines start with the time in UTC, as every script's do.
"""

import errno
import os
import socketserver
import threading

from zkdemo import UserError, ip_port, log, make_parser, run, utc_now

ANSWER_TIMEOUT = 60   # seconds a writer may take to send its line, once connected


def token_text(token):
    return "-" if token is None else f"0x{token:x}"


class Store:
    def __init__(self, path):
        self.path = path
        self.highest = None        # the highest token accepted so far
        self.accepted = self.rejected = 0
        self.record = open(path, "w", buffering=1)
        self.checking = threading.Lock()   # one write at a time, in the order they came

    def write(self, token_word, text):
        """One write: the answer for its writer."""
        try:
            token = None if token_word == "-" else int(token_word, 0)
        except ValueError:
            log(f"refused   a token that is not a number ({token_word!r}): {text}")
            return f"ERROR the token {token_word!r} is not a number"
        with self.checking:
            if token is not None and self.highest is not None and token < self.highest:
                self.rejected += 1
                log(f"REJECTED  token {token_text(token)} < highest {token_text(self.highest)}"
                    f": {text}")
                return f"REJECTED {token_text(self.highest)}"
            if token is None:
                log(f"accepted  without a token (nothing to check): {text}")
            else:
                self.highest = max(self.highest or token, token)
                log(f"accepted  token {token_text(token)} (highest so far): {text}")
            self.accepted += 1
            stamp = utc_now().isoformat(sep=" ", timespec="milliseconds")
            self.record.write(f"{stamp} token {token_text(token)} {text}\n")
            return f"ACCEPTED {token_text(self.highest)}"


class Writer(socketserver.StreamRequestHandler):
    """One writer's connection: a line in, an answer out, until it closes."""

    def handle(self):
        self.connection.settimeout(ANSWER_TIMEOUT)
        try:
            for raw in self.rfile:
                line = raw.decode(errors="replace").strip()
                verb, _, rest = line.partition(" ")
                token_word, _, text = rest.partition(" ")
                if verb != "WRITE" or not token_word:
                    log(f"refused   a line that is not a write: {line[:60]!r}")
                    answer = "ERROR expected: WRITE TOKEN TEXT"
                else:
                    answer = self.server.store.write(token_word, text)
                self.wfile.write(answer.encode() + b"\n")
        except OSError:
            pass   # the writer went; its next connection starts afresh


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True        # a writer that hangs does not keep Ctrl-C waiting
    allow_reuse_address = True   # a restart need not wait for old connections to time out


def main():
    parser = make_parser(__doc__, connects=False)
    parser.add_argument("--listen", required=True, type=ip_port, metavar="IP:PORT",
                        help="the address to listen on, as lock.py --store names it "
                             "(127.0.0.1:7000 on the loopback ensemble)")
    parser.add_argument("--file", default="store.txt", metavar="PATH",
                        help="where the accepted writes go, a new file at each start "
                             "(default: store.txt in the current folder)")
    args = parser.parse_args()
    where = "%s:%d" % args.listen
    try:
        server = Server(args.listen, Writer, bind_and_activate=False)
        server.server_bind()
        server.server_activate()
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise UserError(f"{where} is taken: another store.py (or another "
                            "program) listens there already")
        raise UserError(f"cannot listen on {where}: {e.strerror}")
    try:
        store = server.store = Store(args.file)
    except OSError as e:
        server.server_close()
        raise UserError(f"cannot write {args.file}: {e.strerror}")
    log(f"listening on {where}; accepted writes go to {os.path.abspath(args.file)}")
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        store.record.close()
        log(f"stopped: {store.accepted} writes accepted, {store.rejected} rejected")


if __name__ == "__main__":
    run(main)
