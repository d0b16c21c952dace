#!/bin/bash
# Installs what building and testing xvif needs on a fresh Debian 12 machine,
# and says what it installed. Idempotent: a second run installs nothing.
#   tests/deps.sh build   Rust target only
#   tests/deps.sh qemu    + QEMU 10 (bookworm-backports) and python test modules
#   tests/deps.sh fuzz    + a C++ compiler for libFuzzer
set -euo pipefail
what=${1:-qemu}
say() { echo "deps: $*"; }

if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-none; then
    say "installing Rust target x86_64-unknown-none (rustup)"
    rustup target add x86_64-unknown-none
fi
for c in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$c"; then
        say "installing Rust component $c (rustup)"
        rustup component add "$c"
    fi
done
[ "$what" = build ] && exit 0

SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
apt_updated=0
apt_update() { [ $apt_updated = 1 ] || { $SUDO apt-get update -q >/dev/null; apt_updated=1; }; }
# apt-get install without recommends (a headless test machine needs no GUI,
# audio or Vulkan stack), then names every package it added.
apt_install() {
    local before after added
    before=$(dpkg-query -W -f '${Package}\n' 2>/dev/null | sort)
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "$@" >/dev/null
    after=$(dpkg-query -W -f '${Package}\n' 2>/dev/null | sort)
    added=$(comm -13 <(echo "$before") <(echo "$after") | tr '\n' ' ')
    say "  added $(echo "$added" | wc -w) packages: ${added}"
}

# libFuzzer (built from source by the libfuzzer-sys crate for fuzz/) needs
# a C++ compiler.
if [ "$what" = fuzz ]; then
    if ! command -v c++ >/dev/null; then
        apt_update
        say "installing g++ for libFuzzer (apt)"
        apt_install g++
    fi
    exit 0
fi

# bookworm's QEMU 7.2 crashes the nested Xen dom0; QEMU 10 comes from
# bookworm-backports. The suite is derived from the machine's own apt sources
# (same mirror, same keyring), so no host name is written here.
# Prints the first deb822 stanza whose Suites include $1, retargeted at $1-backports.
derive_deb822() {
    python3 - "$1" "$2" <<'PY'
import re, sys
codename, path = sys.argv[1], sys.argv[2]
for stanza in open(path).read().split("\n\n"):
    m = re.search(r"^Suites:(.*)$", stanza, re.M)
    if m and codename in m.group(1).split():
        print(re.sub(r"^Suites:.*$", "Suites: %s-backports" % codename, stanza.strip(), flags=re.M))
        break
PY
}

add_backports() {
    local codename
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    grep -rqs "${codename}-backports" /etc/apt/sources.list /etc/apt/sources.list.d/ && return 0
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        derive_deb822 "$codename" /etc/apt/sources.list.d/debian.sources |
            $SUDO tee /etc/apt/sources.list.d/xvif-backports.sources >/dev/null
    elif [ -f /etc/apt/sources.list ]; then
        grep -E "^deb [^ ]+ ${codename} " /etc/apt/sources.list | head -1 |
            sed -E "s/ ${codename} / ${codename}-backports /" | $SUDO tee /etc/apt/sources.list.d/xvif-backports.list >/dev/null
    fi
    say "added apt suite ${codename}-backports (derived from the existing apt sources)"
    apt_updated=0
}

qemu_major() { qemu-system-x86_64 --version 2>/dev/null | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -1; }
if [ "$(qemu_major || true)" = "" ] || [ "$(qemu_major)" -lt 10 ]; then
    add_backports
    apt_update
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    say "installing qemu-system-x86 from ${codename}-backports (apt)"
    apt_install -t "${codename}-backports" qemu-system-x86
    say "now: $(qemu-system-x86_64 --version | head -1)"
fi
for tool in readelf:binutils ip:iproute2 cpio:cpio ping:iputils-ping dnsmasq:dnsmasq-base tcpdump:tcpdump; do
    if ! command -v "${tool%%:*}" >/dev/null; then
        apt_update
        say "installing ${tool#*:} (apt)"
        apt_install "${tool#*:}"
    fi
done
for mod in pytest pexpect; do
    if ! python3 -c "import $mod" 2>/dev/null; then
        say "installing python module $mod (pip)"
        python3 -m pip install -q "$mod"
    fi
done
exit 0
