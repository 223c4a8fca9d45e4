#!/usr/bin/env python3
"""The tutorial's three VMs for real, offline: the unchanged Vagrantfile under
Vagrant and vagrant-libvirt, with libvirtd, its dnsmasq and the qemu VMs in a
network namespace of the project's own.

    vm.py box                   build the offline box (once; a minute or two)
    vm.py vagrant ARGS...       run `vagrant ARGS` in the namespace, in this
                                folder: vm.py vagrant up zoo1 zoo2 zoo3
    vm.py status                the namespace, libvirtd and the domains
    vm.py down                  destroy the VMs and remove everything vm.py made

The box. The VMs have no route out, so the box brings what the provisioner
would fetch, as the lab's root does: it is that root (provision/lab.py makes
it once, with debootstrap) with a kernel, systemd, sshd, sudo and rsync
added (systemd-networkd configures the network), a `vagrant` user with
Vagrant's insecure key, and the kernel and initrd beside the disk, so that no bootloader is needed. It is
added as debian/bookworm64, the Vagrantfile's box, to a VAGRANT_HOME of
vm.py's own: a debian/bookworm64 you have in ~/.vagrant.d is never touched.

The namespace. `vm.py vagrant` starts, when they are not running, virtlogd
and libvirtd in a network namespace named $ZKDEMO_VM (default zkdemo-vm),
with no link to this machine's own namespace and no default route, and in a
mount namespace of their own where /etc/libvirt, /var/lib/libvirt,
/var/log/libvirt, /var/cache/libvirt and /run are folders under
/var/lib/zkdemo-vm/NAME. So libvirt's default network never starts, a
libvirtd of this machine's is neither seen nor disturbed, and the VMs'
networks (vagrant-libvirt's 192.168.121.0/24 and the Vagrantfile's
10.0.10.0/24) exist only in there. `down`, or the next run after a crash,
finds what was left by these names. Ctrl-C during `vm.py vagrant up` reaches
vagrant, which removes the VM it had half made; vm.py waits for it.

Where /dev/kvm works the VMs use it; where it does not (no /dev/kvm, or a
kvm_pvm host, under which a Linux guest does not boot) they run under TCG,
qemu's emulator, with a qemu64 CPU. $ZKDEMO_VM_DRIVER (kvm or qemu) decides.

Needs root, and Debian's vagrant, vagrant-libvirt, libvirt-daemon-system,
qemu-system-x86, qemu-utils, dnsmasq-base and rsync (`make test-setup`).
"""

import argparse
import contextlib
import glob
import hashlib
import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import lab
from lab import LabError, run, unmount_below
from zkensemble import STOPS, Parser, cleaning_up, run_tool

NAME = os.environ.get("ZKDEMO_VM") or "zkdemo-vm"
STATE = os.path.join("/var/lib/zkdemo-vm", NAME)
NS_DIR = os.path.join(STATE, "ns")
MOUNT_NS = os.path.join(NS_DIR, "mnt")
VAGRANT_HOME = os.path.join(STATE, "vagrant.d")
BOX_CACHE = os.path.join(lab.CACHE, "vm")
BOX_NAME = "debian/bookworm64"
# Added through a metadata file with a version, so vagrant-libvirt tracks
# the box by version, not by the file's timestamp.
BOX_VERSION = "1.0.0"
# How long `vagrant up zoo1 zoo2 zoo3` takes under the emulator on 2 cores,
# from the box: make bench's ten boots in a row (docs/performance.md).
UP_EXPECTED = "about three minutes (188 to 203 s in ten boots)"
# Private to the namespace: each is a folder of the same name under STATE.
PRIVATE = ["/etc/libvirt", "/var/lib/libvirt", "/var/log/libvirt", "/var/cache/libvirt", "/run"]
# What the box adds to the lab's root: what a Debian Vagrant box has and the
# Vagrantfile relies on.
# systemd-networkd, not ifupdown and dhclient: Vagrant then sets the host
# name and the private network by restarting networkd, where with ifupdown it
# took each interface down and up, DHCP included (40 s under the emulator).
BOX_PACKAGES = ["linux-image-amd64", "systemd-sysv", "openssh-server", "sudo", "rsync"]
TOOLS = {"vagrant": "vagrant", "libvirtd": "libvirt-daemon-system", "virsh": "libvirt-clients",
         "qemu-system-x86_64": "qemu-system-x86", "qemu-img": "qemu-utils",
         "dnsmasq": "dnsmasq-base", "rsync": "rsync", "mkfs.ext4": "e2fsprogs"}
VAGRANT_ENV = {"VAGRANT_HOME": VAGRANT_HOME, "VAGRANT_CHECKPOINT_DISABLE": "1",
               "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1", "VAGRANT_DEFAULT_PROVIDER": "libvirt"}
INSECURE_KEY = "/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub"

# The box's own Vagrantfile. Vagrant reads it before the project's, which
# sets only memory and cpus, so these stay.
BOX_VAGRANTFILE = """\
# zookeeper-demo's offline box (provision/vm.py): no bootloader, the kernel
# and initrd beside the disk; KVM where it works, else qemu's emulator.
kvm = File.writable?("/dev/kvm") && !File.exist?("/sys/module/kvm_pvm")
driver = ENV.fetch("ZKDEMO_VM_DRIVER", kvm ? "kvm" : "qemu")
Vagrant.configure("2") do |config|
  # Under the emulator three VMs on two cores boot in minutes, not seconds
  # (docs/performance.md): Vagrant's default of 300 s to boot is too near.
  config.vm.boot_timeout = 900 if driver == "qemu"
  # The VMs have no route out of vm.py's namespace: keep Vagrant's insecure
  # key rather than spend half a minute replacing it in each.
  config.ssh.insert_key = false
  config.vm.provider :libvirt do |lv|
    lv.driver = driver
    if driver == "kvm"
      lv.cpu_mode = "host-passthrough"
    else
      lv.cpu_mode = "custom"
      lv.cpu_model = "qemu64"
    end
    lv.kernel = File.join(__dir__, "vmlinuz")
    lv.initrd = File.join(__dir__, "initrd.img")
    # quiet: under the emulator every character on the serial console costs.
    lv.cmd_line = "root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet"
    lv.graphics_type = "none"
    lv.video_type = "none"
  end
end
"""


def say(message):
    print(f"vm: {message}", flush=True)


def need_tools():
    missing = [package for tool, package in TOOLS.items()
               if not shutil.which(tool, path=lab.PATH)]
    if missing:
        raise LabError(f"missing: {' '.join(sorted(set(missing)))} "
                       f"(apt-get install them; `make test-setup` does)")
    if os.geteuid() != 0:
        raise LabError("needs root: libvirtd and the namespace are the machine's")


# --- the box ----------------------------------------------------------------------------

def box_path():
    """The box file for this lab root and this recipe."""
    base = lab.base_root()
    recipe = (os.path.basename(base) + " ".join(BOX_PACKAGES) + BOX_VAGRANTFILE
              + inspect.getsource(configure_box_root)).encode()
    return base, os.path.join(BOX_CACHE, f"zkdemo-bookworm-{hashlib.sha256(recipe).hexdigest()[:12]}.box")


def cmd_box(args):
    need_tools()
    base, box = box_path()
    with lab.building("box"):
        return make_box(base, box)


def make_box(base, box):
    if os.path.exists(box):
        say(f"box ready: {box}")
        return 0
    started = time.monotonic()
    work = box + ".work"
    unmount_below(work)
    run("rm", "-rf", "--one-file-system", work)
    root = os.path.join(work, "root")
    os.makedirs(work)
    say(f"copying the lab's root {base}")
    run("cp", "-a", base, root, timeout=600)
    with lab.installing(root) as chroot:
        say(f"installing {' '.join(BOX_PACKAGES)} in it")
        run(*chroot, "apt-get", "update", "-qq", timeout=600)
        run(*chroot, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *BOX_PACKAGES,
            timeout=1200)
        run(*chroot, "apt-get", "clean")
        say("adding the vagrant user, its key and passwordless sudo")
        run(*chroot, "useradd", "--create-home", "--shell", "/bin/bash", "--user-group", "vagrant")
        run(*chroot, "sh", "-c", "printf 'vagrant:vagrant\\nroot:vagrant\\n' | chpasswd")
    configure_box_root(root)
    image = os.path.join(work, "box.img")
    say("writing the disk image (mkfs.ext4 -d, no loop device)")
    raw = os.path.join(work, "disk.raw")
    with open(raw, "wb") as f:
        f.truncate(4 << 30)
    run("mkfs.ext4", "-q", "-F", "-L", "root", "-d", root, raw, timeout=600)
    run("qemu-img", "convert", "-O", "qcow2", raw, image, timeout=600)
    os.remove(raw)
    for pattern, name in (("vmlinuz-*", "vmlinuz"), ("initrd.img-*", "initrd.img")):
        shutil.copy(sorted(glob.glob(os.path.join(root, "boot", pattern)))[-1],
                    os.path.join(work, name))
    with open(os.path.join(work, "metadata.json"), "w") as f:
        json.dump({"provider": "libvirt", "format": "qcow2", "virtual_size": 4}, f)
    with open(os.path.join(work, "Vagrantfile"), "w") as f:
        f.write(BOX_VAGRANTFILE)
    run("tar", "-cf", box + ".part", "-C", work, "metadata.json", "Vagrantfile", "box.img",
        "vmlinuz", "initrd.img", timeout=600)
    os.replace(box + ".part", box)
    run("rm", "-rf", "--one-file-system", work, timeout=600)
    for older in glob.glob(os.path.join(BOX_CACHE, "zkdemo-bookworm-*.box")):
        if older != box:   # an earlier recipe's: 1.3 GB each
            os.remove(older)
            say(f"removed the box of an earlier recipe, {older}")
    say(f"box ready in {time.monotonic() - started:.0f} s: {box}")
    return 0


def configure_box_root(root):
    """What Debian's Vagrant box is set up with, written into the root."""
    def write(path, text, mode=0o644):
        path = os.path.join(root, path.lstrip("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
    write("/etc/sudoers.d/vagrant", "vagrant ALL=(ALL) NOPASSWD: ALL\n", 0o440)
    with open(sorted(glob.glob(INSECURE_KEY))[-1]) as f:
        write("/home/vagrant/.ssh/authorized_keys", f.read(), 0o600)
    os.chmod(os.path.join(root, "home/vagrant/.ssh"), 0o700)
    ids = open(os.path.join(root, "etc/passwd")).read().split("\nvagrant:x:")[1].split(":")[:2]
    for path in ("home/vagrant/.ssh", "home/vagrant/.ssh/authorized_keys"):
        os.chown(os.path.join(root, path), int(ids[0]), int(ids[1]))
    write("/etc/fstab", "/dev/vda / ext4 defaults 0 1\n")
    write("/etc/hostname", "debian\n")
    write("/etc/resolv.conf", "")
    # Asked by its MAC address, libvirt's dnsmasq gives each VM its own lease;
    # networkd's default, a DUID made from /etc/machine-id, is the same in
    # every VM of one box.
    write("/etc/systemd/network/eth0.network",
          "[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n\n[DHCPv4]\nClientIdentifier=mac\n")
    wanted = os.path.join(root, "etc/systemd/system/multi-user.target.wants/systemd-networkd.service")
    if not os.path.lexists(wanted):
        os.symlink("/lib/systemd/system/systemd-networkd.service", wanted)
    # Each VM makes its own host keys at its first boot, of the two kinds
    # that take a moment to make: an RSA key took 20 s and more under the
    # emulator, with sshd, and so Vagrant, waiting for it.
    write("/etc/ssh/sshd_config.d/vagrant.conf",
          "UseDNS no\nHostKey /etc/ssh/ssh_host_ed25519_key\nHostKey /etc/ssh/ssh_host_ecdsa_key\n")
    for key in glob.glob(os.path.join(root, "etc/ssh/ssh_host_*")):
        os.remove(key)
    write("/etc/systemd/system/ssh.service.d/zkdemo-host-keys.conf",
          "[Service]\nExecStartPre=\n"
          # $$ is systemd's way to write a $ for the shell.
          "ExecStartPre=/bin/sh -c 'for kind in ed25519 ecdsa; do "
          "key=/etc/ssh/ssh_host_$${kind}_key; [ -f $$key ] || "
          "ssh-keygen -q -t $$kind -N \"\" -f $$key; done'\n"
          "ExecStartPre=/usr/sbin/sshd -t\n")
    # What a boot under the emulator does not need (systemd-analyze blame,
    # docs/performance.md): e2scrub_reap (a minute and more of CPU at each
    # boot, for LVM snapshots the box has none of) and gettys on tty2-6 (the
    # VMs have no screen). ZooKeeper starts at boot once the provisioner has
    # configured it, not before with Debian's default configuration, which
    # the provisioner would only restart.
    for unit in ("e2scrub_reap.service", "e2scrub_all.timer", "getty-static.service"):
        os.symlink("/dev/null", os.path.join(root, "etc/systemd/system", unit))
    write("/etc/systemd/system/zookeeper.service.d/zkdemo-provisioned.conf",
          "[Unit]\nConditionPathExists=/var/lib/zkdemo/configured\n")
    run("rm", "-rf", os.path.join(root, "var/lib/apt/lists"), os.path.join(root, "usr/share/doc"),
        os.path.join(root, "usr/share/man"))


# --- the namespace and libvirtd ------------------------------------------------------------

def inside(*command):
    """A command line run in the namespace: its network and its mounts."""
    return ["nsenter", f"--mount={MOUNT_NS}", f"--net=/run/netns/{NAME}", *command]


def pid_alive(path):
    """The pid in a pid file, if that process runs (a zombie, killed but not
    yet reaped, does not)."""
    try:
        pid = int(open(path).read())
        with open(f"/proc/{pid}/status") as f:
            state = next(line for line in f if line.startswith("State:"))
        return None if state.split()[1] in ("Z", "X") else pid
    except (OSError, ValueError, StopIteration):
        return None


def running():
    return (os.path.exists(f"/run/netns/{NAME}") and os.path.exists(MOUNT_NS)
            and pid_alive(os.path.join(STATE, "run", "libvirtd.pid")))


def start():
    """The namespace and libvirtd in it; left from a crashed run, cleaned first."""
    need_tools()
    if running():
        return
    if os.path.exists(STATE) or os.path.exists(f"/run/netns/{NAME}"):
        say(f"an earlier run left {NAME} behind; removed: {remove()}")
    say(f"starting libvirtd in the network namespace {NAME}")
    run("ip", "netns", "add", NAME)
    run("ip", "-n", NAME, "link", "set", "lo", "up")
    check_isolated()
    for folder in PRIVATE:
        os.makedirs(STATE + folder, exist_ok=True)
    run("cp", "-a", "/etc/libvirt/.", STATE + "/etc/libvirt/")
    # libvirt's default network (192.168.122.0/24) must never start.
    for path in glob.glob(STATE + "/etc/libvirt/qemu/networks/**/*.xml", recursive=True):
        os.remove(path)
    with open(STATE + "/etc/libvirt/qemu.conf", "a") as f:
        f.write('\n# zookeeper-demo: qemu runs as root, which may open /dev/kvm and the disks\n'
                'user = "root"\ngroup = "root"\n')
    os.makedirs(NS_DIR, exist_ok=True)
    run("mount", "--bind", NS_DIR, NS_DIR)
    run("mount", "--make-private", NS_DIR)
    open(MOUNT_NS, "w").close()
    run("unshare", f"--mount={MOUNT_NS}", "--propagation", "private", "true")
    for folder in PRIVATE:
        run(*inside("mount", "--bind", STATE + folder, folder))
    os.makedirs(STATE + "/run/libvirt", exist_ok=True)
    run(*inside("virtlogd", "--daemon", "--pid-file", "/run/virtlogd.pid"))
    run(*inside("libvirtd", "--daemon", "--pid-file", "/run/libvirtd.pid"))
    if not lab.wait_for(lambda: virsh("version", check=False).returncode == 0, 30, 0.2):
        raise LabError("libvirtd did not answer within 30 s in " + NAME)
    add_box()


def check_isolated():
    """The namespace has no default route and no link to another namespace;
    this machine's own has no address or route of the VMs' networks."""
    for family in ("-4", "-6"):
        if run("ip", "-n", NAME, family, "route", "show", "default").stdout.strip():
            raise LabError(f"namespace {NAME} has a default route: refusing to go on")
    for link in json.loads(run("ip", "-n", NAME, "-j", "link", "show").stdout):
        if link.get("link_netnsid") is not None:
            raise LabError(f"namespace {NAME} has a link {link['ifname']} to another "
                           "namespace: refusing to go on")
    shown = run("ip", "-o", "addr").stdout + run("ip", "route").stdout
    for prefix in ("10.0.10.", "192.168.121.", "192.168.122."):
        if prefix in shown:
            raise LabError(f"this machine's own namespace has an address or route in {prefix}0/24: "
                           "the VMs' networks must exist only in " + NAME)


def virsh(*args, check=True):
    return run(*inside("virsh", "--connect", "qemu:///system", *args), check=check)


def add_box():
    _, box = box_path()
    if not os.path.exists(box):
        cmd_box(None)
    listed = vagrant_run("box", "list").stdout
    if BOX_NAME not in listed:
        say(f"adding the box as {BOX_NAME} {BOX_VERSION} to vm.py's own VAGRANT_HOME")
        metadata = os.path.join(STATE, "box.json")
        with open(metadata, "w") as f:
            json.dump({"name": BOX_NAME, "versions": [{"version": BOX_VERSION, "providers": [
                {"name": "libvirt", "url": "file://" + box}]}]}, f)
        vagrant_run("box", "add", metadata, timeout=600)


def vagrant_env():
    return dict(os.environ, **VAGRANT_ENV)


def vagrant_command(*args):
    """`vagrant ARGS` in the namespace, in the current folder."""
    return inside("sh", "-c", 'cd "$1" && shift && exec vagrant "$@"', "sh", os.getcwd(), *args)


def vagrant_run(*args, timeout=120, check=True):
    return run(*vagrant_command(*args), timeout=timeout, env=vagrant_env(), check=check)


def driver():
    """kvm or qemu (the emulator), as the box's Vagrantfile decides it."""
    kvm = os.access("/dev/kvm", os.W_OK) and not os.path.exists("/sys/module/kvm_pvm")
    return os.environ.get("ZKDEMO_VM_DRIVER") or ("kvm" if kvm else "qemu")


def cmd_vagrant(args):
    if not args.args:
        raise lab.UsageError("give vagrant's arguments: vm.py vagrant up zoo1 zoo2 zoo3")
    start()
    if not os.path.exists(os.path.join(os.getcwd(), "Vagrantfile")):
        raise lab.UsageError(f"no Vagrantfile in {os.getcwd()}: run vm.py from the project's folder")
    if args.args[0] == "up" and driver() == "qemu":
        # So that a slow boot does not look hung (figures: docs/performance.md).
        say(f"no KVM here: the VMs run under qemu's emulator. On 2 cores the three take "
            f"{UP_EXPECTED} to boot and provision (this machine has {os.cpu_count()}); "
            "Vagrant waits up to 15 minutes for each")
    # Vagrant's own output, live; its progress bars (a line redrawn
    # thousands of times) reach a terminal only.
    process = None

    def pass_on(signum, frame):
        # Ctrl-C reaches vagrant too (a terminal signals the whole group), and
        # vagrant removes what it had half made: let it finish (subprocess.run
        # would kill it). SIGTERM or SIGHUP, which vagrant would die of on the
        # spot, become the one Ctrl-C vagrant knows how to clean up after.
        # vagrant is started with both ignored, so that one sent to the whole
        # group (`timeout`, a closed terminal) reaches it only this way.
        if signum != signal.SIGINT and not passed:
            passed.append(signum)
            if process:
                process.send_signal(signal.SIGINT)
    passed = []
    for sig in STOPS:
        if not (sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN):
            signal.signal(sig, pass_on)
    process = subprocess.Popen(vagrant_command(*args.args), env=vagrant_env(),
                               preexec_fn=ignore_term_and_hup)
    if passed:   # stopped while vagrant was being started
        process.send_signal(signal.SIGINT)
    return process.wait()


def ignore_term_and_hup():
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def cmd_status(args):
    if not running():
        say(f"{NAME} is not running (vm.py vagrant up zoo1 zoo2 zoo3 starts it)")
        return 1
    say(f"libvirtd runs in the namespace {NAME}; domains:")
    print(virsh("list", "--all").stdout.rstrip())
    return 0


def remove():
    """Everything vm.py made under NAME, whatever state a run left it in;
    says what that was."""
    removed = []
    if os.path.exists(f"/run/netns/{NAME}"):
        # Every process in the namespace is ours: libvirtd, virtlogd, dnsmasq, qemu, vagrant.
        pids = run("ip", "netns", "pids", NAME, check=False).stdout.split()
        names = sorted({process_name(pid) for pid in pids} - {None})
        removed.append(f"the namespace {NAME}, {len(pids)} processes in it"
                       + (f" ({', '.join(names)})" if names else ""))
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(int(pid), sig)
                except ProcessLookupError:
                    pass
            if lab.wait_for(lambda: not run("ip", "netns", "pids", NAME, check=False).stdout.split(),
                            15, 0.2):
                break
        run("ip", "netns", "delete", NAME, check=False)
    # A qemu whose namespace went from under it (deleted by hand, or by an
    # older lab.py that took every namespace beginning with its name) runs on:
    # it is found by the disk and kernel of ours in its command line.
    strays = [pid for pid in processes_naming(STATE + "/") if pid != os.getpid()]
    if strays:
        removed.append(f"{len(strays)} processes outside it")
        for pid in strays:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        lab.wait_for(lambda: not processes_naming(STATE + "/"), 15, 0.2)
    mounts = lab.mounted_below(STATE)
    unmount_below(STATE)
    if mounts:
        removed.append(f"{len(mounts)} mounts")
    if os.path.exists(STATE):
        run("rm", "-rf", "--one-file-system", STATE, timeout=300)
        removed.append(STATE)
    return ", ".join(removed) or "nothing"


def processes_naming(path):
    """The pids of processes with `path` in their command line (a folder's
    path ends with "/": zkdemo-vm2's files do not begin with zkdemo-vm's)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if path.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def process_name(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def cmd_down(args):
    with cleaning_up():   # a second Ctrl-C must not leave it half removed
        return take_down()


def take_down():
    if running() and os.path.exists(os.path.join(os.getcwd(), ".vagrant")):
        say("vagrant destroy -f")
        destroyed = vagrant_run("destroy", "-f", timeout=300, check=False)
        if destroyed.returncode != 0:
            say("vagrant destroy failed; removing the namespace and everything in it anyway")
    if not os.path.exists(STATE) and not os.path.exists(f"/run/netns/{NAME}"):
        say(f"{NAME} is not up: nothing to take down")
        return 0
    say(f"down: removed {remove()} (the box stays in {BOX_CACHE})")
    return 0


def main(argv=None):
    parser = Parser(prog="vm.py", description=__doc__.split("\n\n")[0],
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=Parser)
    commands.add_parser("box", help="build the offline box").set_defaults(run=cmd_box)
    vagrant = commands.add_parser("vagrant", help="run vagrant in the namespace")
    vagrant.add_argument("args", nargs=argparse.REMAINDER)
    vagrant.set_defaults(run=cmd_vagrant)
    commands.add_parser("status", help="libvirtd and the domains").set_defaults(run=cmd_status)
    commands.add_parser("down", help="remove everything vm.py made").set_defaults(run=cmd_down)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(run_tool("vm.py", main))
