#!/usr/bin/env bash
# The short tour `make demo` gives once the loopback ensemble serves:
# watch.py in the background, an election handing over, get.py, the workers
# stopped, then / locked down and opened again. About 15 seconds. The
# timeline of it all is drawn to $ZKDEMO_STATE_DIR/timeline.html.
#
# It talks to the ensemble local-cluster.py runs ($ZKDEMO_IPS, default
# 127.0.10.101-103), whatever ZKDEMO_HOSTS says.
set -euo pipefail
cd "$(dirname "$0")/.."

ips=${ZKDEMO_IPS:-127.0.10.101,127.0.10.102,127.0.10.103}
ZKDEMO_HOSTS=$(sed 's/,/:2181,/g; s/$/:2181/' <<<"$ips")
export ZKDEMO_HOSTS
py=.venv/bin/python

say() { printf '\n--- %s\n' "$*" 2>/dev/null || exit 141; }   # its reader gone: end, cleanly
pause() { sleep "$1"; }   # a pause for the reader, not synchronisation

# The timeline recorder notes each server's mode while the tour runs, and
# draws the page at the end from that, watch.py's lines and the workers' logs.
state=${ZKDEMO_STATE_DIR:-.zkdemo}
mkdir -p "$state"
# The tour's workers are recorded in a folder of its own, so that stopping
# them never touches workers you started yourself.
export ZKDEMO_RUN_DIR="$state/tour-workers"
"$py" scripts/create-stop.py >/dev/null 2>&1 || true   # an interrupted tour's, if any
rm -rf "$ZKDEMO_RUN_DIR"
# However the tour ends (done, Ctrl-C, SIGTERM, SIGHUP, its reader gone),
# everything it started is stopped: its workers (create-stop.py runs in a
# session of its own, out of reach of a second Ctrl-C), create.py, watch.py
# and the recorder. Nothing is printed from here: the reader may be gone.
stop_everything() {
    trap '' INT TERM HUP PIPE
    setsid --wait "$py" scripts/create-stop.py >/dev/null 2>&1 || true
    local jobs
    jobs=$(jobs -p)
    # shellcheck disable=SC2086 # one pid a word
    [ -z "$jobs" ] || kill $jobs 2>/dev/null || true
    wait
}
trap stop_everything EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE
: > "$state/tour-watch.log"
: > "$state/tour-create.log"
"$py" provision/timeline.py record "$state/tour-create.log" "$state/tour-watch.log" \
    --title "The tour of make demo" >/dev/null &
recorder_pid=$!

say "watch.py reports every change under /zkdemo; its lines are marked 'watch |'"
"$py" scripts/watch.py > >(tee "$state/tour-watch.log" | sed -u 's/^/    watch | /') &
pause 1

say "create.py 3 creates an ephemeral, sequential znode and stays 3 seconds"
"$py" scripts/create.py 3 > >(tee "$state/tour-create.log" | sed -u 's/^/   create | /') &
create_pid=$!
pause 1

say "create-start.py 3: three workers run create.py over and over; they queue up behind it"
"$py" scripts/create-start.py 3
pause 1

say "get.py: the znodes in sequence order; the lowest one leads"
"$py" scripts/get.py
wait "$create_pid"

say "create.py has gone, its znode with it: the next in line leads (get.py again)"
"$py" scripts/get.py

say "create-stop.py stops the workers; each deletes its znode as it exits"
"$py" scripts/create-stop.py
pause 1

say "acl-lockdown.py: / becomes read-only for everyone but 127.0.0.1"
"$py" scripts/acl-lockdown.py

say "the same from 127.0.0.2, which looks like another machine: refused"
"$py" scripts/acl-lockdown.py --source 127.0.0.2 || true

say "acl-lockdown.py --undo opens / again"
"$py" scripts/acl-lockdown.py --undo

kill -INT "$recorder_pid"
wait "$recorder_pid" || true
say "that was the tour; $state/timeline.html draws it (open it in a browser); the README takes each script in turn"
printf 'export ZKDEMO_HOSTS=%s\n' "$ZKDEMO_HOSTS"
