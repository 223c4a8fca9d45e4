#!/usr/bin/env bash
# Provision one ZooKeeper server of the tutorial's ensemble on Debian.
#
#   zookeeper.sh MYID ADDRESSES [CLIENT_ADDRESS]
#
#   MYID            this server's id: 1, 2 or 3 (see config/nodes)
#   ADDRESSES       the ensemble's addresses in myid order, comma separated
#                   (the Vagrantfile passes 10.0.10.101,10.0.10.102,10.0.10.103);
#                   a single address makes a standalone server
#   CLIENT_ADDRESS  bind the client port to this address only (default: all
#                   addresses, so that other machines and 127.0.0.1 both reach it)
#
# Environment: ZKDEMO_REPO, the project's folder (default /vagrant, where Vagrant
# mounts it); ZK_HEAP_MB, ZooKeeper's Java heap (default 128).
#
# Safe to run again: it installs, writes and restarts only what changed.
set -euo pipefail

usage() { echo "usage: zookeeper.sh MYID ADDRESSES [CLIENT_ADDRESS]" >&2; exit 2; }
if [ $# -lt 2 ] || [ $# -gt 3 ]; then usage; fi
myid=$1
IFS=, read -r -a addresses <<<"$2"
client_address=${3:-}
repo=${ZKDEMO_REPO:-/vagrant}
heap_mb=${ZK_HEAP_MB:-128}
if ! [[ $myid =~ ^[0-9]+$ ]] || [ "$myid" -lt 1 ] || [ "$myid" -gt "${#addresses[@]}" ]; then
    echo "zookeeper.sh: MYID must be 1 to ${#addresses[@]}, got '$myid'" >&2
    exit 2
fi
[ -r "$repo/config/zoo.cfg" ] || { echo "zookeeper.sh: no $repo/config/zoo.cfg (set ZKDEMO_REPO)" >&2; exit 2; }

conf=/etc/zookeeper/conf_zkdemo
venv=/opt/zkdemo-venv
state=/var/lib/zkdemo
changed=0
say() { echo "zoo$myid: $*"; }

# Writes stdin to a file only when its content differs; notes the change.
install_file() {
    local target=$1 new
    new=$(cat)
    if [ ! -f "$target" ] || [ "$(cat "$target")" != "$new" ]; then
        printf '%s\n' "$new" >"$target"
        say "wrote $target"
        changed=1
    fi
}

# 1. Packages. apt-get update only when one is missing and the last update is
# over a day old: a box (or the lab's root) that has them needs no network.
mkdir -p "$state"
missing=()
for package in zookeeperd python3-venv; do
    dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q 'ok installed' \
        || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ -z "$(find "$state/apt-updated" -mmin -1440 2>/dev/null)" ]; then
        say "apt-get update"
        apt-get update -qq
        touch "$state/apt-updated"
    fi
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

# 2. A venv with kazoo, first on PATH for logins, so /vagrant/scripts/get.py runs as typed.
if ! cmp -s "$repo/requirements.txt" "$venv/requirements.txt"; then
    say "creating $venv from requirements.txt"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$repo/requirements.txt"
    cp "$repo/requirements.txt" "$venv/requirements.txt"
fi
install_file /etc/profile.d/zkdemo.sh <<EOF
# Added by zookeeper-demo's provisioner: python3 is the venv that has kazoo.
export PATH=$venv/bin:\$PATH
EOF

# 3. Configuration: config/zoo.cfg with this ensemble's addresses, in a conf
# directory of our own that Debian's alternatives system makes the live one.
mkdir -p "$conf"
for file in log4j.properties configuration.xsl; do
    [ -f "$conf/$file" ] || cp "/etc/zookeeper/conf_example/$file" "$conf/$file"
done
render_zoo_cfg() {
    local key value
    echo "# Installed by zookeeper-demo's provisioner from config/zoo.cfg"
    while IFS='=' read -r key value; do
        case "$key" in
            '' | '#'*) continue ;;
            server.*)  # an ensemble of fewer addresses leaves the rest out
                [ "${key#server.}" -le "${#addresses[@]}" ] || continue
                value="${addresses[${key#server.} - 1]}:${value#*:}" ;;
        esac
        echo "$key=$value"
        if [ "$key" = clientPort ] && [ -n "$client_address" ]; then
            echo "clientPortAddress=$client_address"
        fi
    done <"$repo/config/zoo.cfg"
}
render_zoo_cfg | install_file "$conf/zoo.cfg"
echo "$myid" | install_file "$conf/myid"
# Debian's environment file, with a logger on the classpath: without
# slf4j-log4j12, ZooKeeper logs nothing and /var/log/zookeeper stays empty.
install_file "$conf/environment" <<EOF
NAME=zookeeper
ZOOCFGDIR=$conf
ZOOCFG=$conf/zoo.cfg
ZOO_LOG_DIR=/var/log/zookeeper
ZOO_LOG4J_PROP=INFO,ROLLINGFILE
JMXLOCALONLY=true
JAVA=/usr/bin/java
ZOOMAIN=org.apache.zookeeper.server.quorum.QuorumPeerMain
CLASSPATH="$conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar"
JAVA_OPTS="-Xms32m -Xmx${heap_mb}m"
EOF
if [ "$(readlink -f /etc/zookeeper/conf)" != "$conf" ]; then
    update-alternatives --quiet --install /etc/zookeeper/conf zookeeper-conf "$conf" 50
    update-alternatives --quiet --set zookeeper-conf "$conf"
    changed=1
fi
# Configured: from now on ZooKeeper may start at boot (the VMs' box waits for
# this file), and the lab knows this machine needs no provisioning again.
touch "$state/configured"

# 4. Restart ZooKeeper when something changed or it is not running.
port=$(sed -n 's/^clientPort=//p' "$conf/zoo.cfg")
srvr() { python3 - "${1:-${client_address:-127.0.0.1}}" "$port" <<'EOF'
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as s:
        s.sendall(b"srvr")
        print(s.makefile(errors="replace").read(), end="")
except OSError:
    sys.exit(1)
EOF
}
service_zookeeper() {
    if [ -d /run/systemd/system ]; then
        systemctl "$1" zookeeper
    else
        /etc/init.d/zookeeper "$1"   # no systemd (a chroot or container)
    fi
}
if [ "$changed" = 1 ] || ! srvr >/dev/null; then
    say "restarting ZooKeeper"
    service_zookeeper restart
else
    say "configuration unchanged; ZooKeeper left running"
fi

# 5. Wait for it to answer, and say what it is. When a majority of the
# ensemble's servers answer (the last machine of three to come up), a quorum
# can form: wait for it to serve, so that the last line tells the truth.
answering() {
    local count=0 address
    for address in "${addresses[@]}"; do
        if [ "$address" = "${addresses[$((myid - 1))]}" ] || srvr "$address" >/dev/null; then
            count=$((count + 1))
        fi
    done
    [ $((count * 2)) -gt "${#addresses[@]}" ]
}
answered=0
for _ in $(seq 1 60); do
    if answer=$(srvr) && [ -n "$answer" ]; then
        answered=1
        mode=$(sed -n 's/^Mode: //p' <<<"$answer")
        if [ -n "$mode" ] || ! answering; then
            say "ZooKeeper answers on port $port: ${mode:-not serving yet (waiting for a quorum of its peers)}"
            exit 0
        fi
    fi
    sleep 1
done
if [ "$answered" = 1 ]; then
    say "ZooKeeper answers on port $port: not serving yet (a majority answers, but no quorum formed within 60 s; see /var/log/zookeeper/zookeeper.log)"
    exit 0
fi
echo "zoo$myid: ZooKeeper did not answer within 60 s; see /var/log/zookeeper/zookeeper.log" >&2
exit 1
