"""The VMs' rows of `make bench` (tests/bench.py calls vm_rows()): how long the
three VMs take to come up (ten boots in a row, each from nothing but the
cached box, as the tests boot them: min, median and max; and where one VM's
boot spends its time, from systemd-analyze), and what fits in a VM's memory,
measured as the lab measures its machines, so that the two can be compared.

Memory, in zoo1 of the three VMs provision/vm.py boots ($ZKDEMO_VM=zkdbench-vm):
MemTotal - MemAvailable from the VM's /proc/meminfo with ZooKeeper serving,
then with a zkCli.sh session, then with watch.py, then after each
create-start.py worker, until a tenth of the VM's memory is left or ZooKeeper
stops answering its own `srvr`. Everything it starts is stopped at the end,
and the VMs and the namespace are removed whatever failed.
"""

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

from conftest import REPO
from zkensemble import cleaning_up

NAME = "zkdbench-vm"
ENV = dict(os.environ, ZKDEMO_VM=NAME)
VM_PY = os.path.join(REPO, "provision", "vm.py")

# Run as root in zoo1; prints "STEP used_mb available_mb" lines.
MEMORY_SCRIPT = r"""
set -u
export PATH=/opt/zkdemo-venv/bin:$PATH ZKDEMO_RUN_DIR=/tmp/bench-workers
cd /vagrant
mem() { awk -v step="$1" '/MemTotal/{t=$2}/MemAvailable/{a=$2}
        END{printf "%s %.1f %.1f %.1f\n", step, (t-a)/1024, a/1024, t/1024}' /proc/meminfo; }
serves() { timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/2181; printf srvr >&3; cat <&3' \
           2>/dev/null | grep -q '^Mode: '; }
mem zookeeper
setsid bash -c 'sleep 3600 | /usr/share/zookeeper/bin/zkCli.sh -server 127.0.0.1:2181 >/dev/null 2>&1' &
cli=$!
for _ in $(seq 60); do [ "$(ss -tn state established '( dport = 2181 )' | wc -l)" -ge 2 ] && break; sleep 1; done
sleep 3; mem zkcli
setsid python3 scripts/watch.py >/dev/null 2>&1 &
watch=$!
sleep 5; mem watch
workers=0
while [ "$workers" -lt 12 ]; do
    timeout 30 python3 scripts/create-start.py 1 >/dev/null 2>&1 \
        || { echo "start-failed $((workers + 1))"; break; }
    workers=$((workers + 1))
    sleep 6
    mem "worker-$workers"
    serves || { echo "stopped-serving $workers"; break; }
    awk '/MemTotal/{t=$2}/MemAvailable/{a=$2}END{exit !(a < t / 10)}' /proc/meminfo \
        && { echo "tenth-left $workers"; break; }
done
timeout 60 python3 scripts/create-stop.py >/dev/null 2>&1
kill -- -"$watch" -"$cli" 2>/dev/null
echo "oom-kills $(dmesg | grep -c 'Out of memory')"
"""


ENDINGS = {"stopped-serving": "ZooKeeper no longer answering",
           "tenth-left": "a tenth of the memory left",
           "start-failed": "a worker that could not reach ZooKeeper"}


def run_vm(project, *args, timeout=1200):
    result = subprocess.run([sys.executable, VM_PY, *args], cwd=project, env=ENV,
                            capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise RuntimeError(f"vm.py {' '.join(args[:3])} exited {result.returncode}: "
                           + (result.stderr or result.stdout).strip().splitlines()[-1])
    return result


def vm_rows(boots=int(os.environ.get("BENCH_VM_BOOTS", "10"))):
    """The VMs' figures, or why they could not be had: the three booted
    `boots` times in a row ($BENCH_VM_BOOTS, default 10), then memory."""
    if os.geteuid() != 0 or subprocess.run(["sh", "-c", "command -v vagrant libvirtd"],
                                           capture_output=True, env=dict(
                                               os.environ, PATH="/usr/sbin:/usr/bin:/sbin:/bin")
                                           ).returncode != 0:
        return {"not_measured": "the VMs cannot run here: root, vagrant or libvirt missing"}
    with tempfile.TemporaryDirectory(prefix="zkdemo-bench-vm-") as folder:
        project = os.path.join(folder, "zookeeper-demo")
        subprocess.run(["rsync", "-a", "--exclude", ".git", "--exclude", ".venv", "--exclude",
                        ".zkdemo", "--exclude", ".vagrant", "--exclude", "__pycache__",
                        f"{REPO}/", f"{project}/"], check=True)
        with open(os.path.join(project, "bench-memory.sh"), "w") as f:
            f.write(MEMORY_SCRIPT)
        try:
            run_vm(project, "box")
            ups = []
            for boot in range(1, boots + 1):
                # As the tests do: from nothing but the cached box, libvirtd's
                # start and the box's upload included.
                run_vm(project, "down")
                started = time.monotonic()
                run_vm(project, "vagrant", "up", "zoo1", "zoo2", "zoo3")
                ups.append(round(time.monotonic() - started))
                print(f"bench: vagrant up zoo1 zoo2 zoo3, {boot} of {boots}: {ups[-1]} s",
                      file=sys.stderr)
            booted = boot_figures(run_vm(project, "vagrant", "ssh", "zoo1", "-c",
                                         "sudo systemd-analyze; sudo systemd-analyze blame | head -n 8",
                                         timeout=120).stdout)
            said = run_vm(project, "vagrant", "ssh", "zoo1", "-c",
                          "sudo timeout 900 bash /vagrant/bench-memory.sh", timeout=1000).stdout
        finally:
            with cleaning_up():
                subprocess.run([sys.executable, VM_PY, "down"], cwd=project, env=ENV,
                               capture_output=True, timeout=600, process_group=0)
    return {"up_s": {"runs": ups, "min": min(ups), "median": statistics.median(ups),
                     "max": max(ups)},
            "boot_zoo1": booted, "memory_256": memory_figures(said)}


def boot_figures(said):
    """systemd-analyze's account of one VM's last boot: kernel, initrd and
    userspace in seconds, and the slowest units."""
    figures = {}
    for part in ("kernel", "initrd", "userspace"):
        found = re.search(r"([\d.]+(?:min [\d.]+)?s) \(" + part + r"\)", said)
        if found:
            figures[part + "_s"] = seconds(found.group(1))
    figures["slowest"] = [" ".join(line.split()) for line in said.splitlines()
                          if re.match(r"\s*[\d.]+(ms|s|min)\b", line)][:8]
    return figures


def seconds(text):
    """systemd's `1min 2.345s` or `950ms` in seconds."""
    total = 0.0
    for value, unit in re.findall(r"([\d.]+)(min|ms|s)", text):
        total += float(value) * {"min": 60, "s": 1, "ms": 0.001}[unit]
    return round(total, 2)


def memory_figures(said):
    steps = {m[0]: (float(m[1]), float(m[2]), float(m[3]))
             for m in re.findall(r"^(\S+) ([\d.]+) ([\d.]+) ([\d.]+)$", said, re.M)}
    workers = sorted(int(k.split("-")[1]) for k in steps if k.startswith("worker-"))
    ended = re.search(r"^(stopped-serving|tenth-left|start-failed) (\d+)$", said, re.M)
    fit = int(ended.group(2)) - 1 if ended else (workers[-1] if workers else 0)
    counted = fit if fit >= 1 else (workers[-1] if workers else 0)
    per_worker = ((steps[f"worker-{counted}"][0] - steps["watch"][0]) / counted
                  if counted else None)
    return {"system_sees_mb": steps["zookeeper"][2],
            "zookeeper_and_system_mb": steps["zookeeper"][0],
            "zkcli_adds_mb": round(steps["zkcli"][0] - steps["zookeeper"][0], 1),
            "watch_py_adds_mb": round(steps["watch"][0] - steps["zkcli"][0], 1),
            "worker_adds_mb": round(per_worker, 1) if per_worker else None,
            "workers_that_fit": fit,
            "ended_by": ENDINGS[ended.group(1)] if ended else "the 12 workers it tries",
            "oom_kills": int(re.search(r"^oom-kills (\d+)$", said, re.M).group(1))}
