#!/usr/bin/env bash
# Install the Debian packages this project runs on, when they are missing.
#
#   setup-host.sh                 ZooKeeper (Debian's zookeeper package, with a
#                                 JRE) and python3-venv; fails if it cannot
#   setup-host.sh --test-tools    also shellcheck, debootstrap, nftables,
#                                 chromium (to draw the timeline's PNG) and
#                                 what --vm installs, for the test suite; a test
#                                 that needs a tool that could not be installed
#                                 fails under CI=true (and is skipped elsewhere)
#   setup-host.sh --lab           also debootstrap and nftables, for provision/lab.py
#   setup-host.sh --vm            also vagrant with vagrant-libvirt, libvirt, qemu,
#                                 dnsmasq and rsync, for provision/vm.py (which
#                                 runs a libvirtd of its own in a namespace of
#                                 its own, never this machine's)
#
# Uses sudo when not root. Set ZOOKEEPER_HOME to use an Apache release instead.
set -euo pipefail

required=()
if [ -z "${ZOOKEEPER_HOME:-}" ] && [ ! -e /usr/share/java/zookeeper.jar ]; then
    required+=(zookeeper)
fi
python3 -c 'import ensurepip, venv' 2>/dev/null || required+=(python3-venv)
optional=()
case "${1:-}" in
    --test-tools) tools=(shellcheck vagrant debootstrap nft libvirtd qemu-system-x86_64 qemu-img dnsmasq rsync chromium) ;;
    --lab) tools=(debootstrap nft) ;;
    --vm) tools=(vagrant debootstrap libvirtd qemu-system-x86_64 qemu-img dnsmasq rsync) ;;
    *) tools=() ;;
esac
for tool in "${tools[@]}"; do
    if ! PATH=$PATH:/usr/sbin:/sbin command -v "$tool" >/dev/null; then
        case $tool in
            nft) package=nftables ;;
            libvirtd) package=libvirt-daemon-system ;;
            qemu-system-x86_64) package=qemu-system-x86 ;;
            qemu-img) package=qemu-utils ;;
            dnsmasq) package=dnsmasq-base ;;
            *) package=$tool ;;
        esac
        optional+=("$package")
    fi
done
[ ${#required[@]} -eq 0 ] && [ ${#optional[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
    echo "setup-host.sh: no apt-get here; install by hand: ${required[*]} ${optional[*]}" >&2
    if [ ${#required[@]} -gt 0 ]; then exit 1; fi
    exit 0
fi
sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
apt_install() {
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq \
        --no-install-recommends "$@" >/dev/null
}
# A fresh machine may have no package lists yet.
if ! apt-cache show "${required[@]}" "${optional[@]}" >/dev/null 2>&1; then
    echo "setup-host.sh: apt-get update"
    "${sudo[@]}" apt-get update -qq
fi
if [ ${#required[@]} -gt 0 ]; then
    echo "setup-host.sh: installing ${required[*]}"
    apt_install "${required[@]}"
fi
for tool in "${optional[@]}"; do
    echo "setup-host.sh: installing $tool (for the tests)"
    packages=("$tool")
    if [ "$tool" = vagrant ]; then
        # vagrant needs libarchive-tools, which needs libarchive13 of exactly its
        # own version; an image whose libarchive13 is a newer point release must
        # go back to that one (that downgrade, and nothing else). vagrant-libvirt
        # gives `vagrant validate` a provider it can use.
        version=$(apt-cache policy libarchive-tools | sed -n 's/^  Candidate: //p')
        packages=(--allow-downgrades "libarchive13=$version" vagrant vagrant-libvirt)
    elif [ "$tool" = chromium ]; then
        packages=(chromium fonts-liberation)   # text in the PNG needs a font
    fi
    apt_install "${packages[@]}" || echo "setup-host.sh: could not install $tool" >&2
done
