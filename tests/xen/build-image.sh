#!/bin/bash
# Build (or find in the cache) everything needed to boot Xen 4.17 with a Linux
# PV dom0 under QEMU TCG:
#
#   xen            the hypervisor, gunzipped (QEMU's multiboot loader wants it raw)
#   vmlinuz        Debian's 6.1 kernel, used for dom0 and for Linux PV guests
#   dom0.cpio.gz   dom0 initramfs: busybox, bash, flock, xl, xenstored,
#                  xenconsoled, xen-init-dom0, xenstore-* tools, their libs,
#                  /etc/xen/scripts, Xen kernel modules, qemu-xen (the HVM
#                  device model) with SeaBIOS and iPXE ROMs; /init brings up the
#                  toolstack, bridge xenbr0 (10.0.0.1/24), bridge xenbr1 on
#                  the outer machine's e1000 when there is one, prints
#                  XVIF-DOM0-READY, runs /guests/autorun.sh if present, then
#                  gives a shell on the console. /guests/ holds vmlinuz and
#                  domU.cpio.gz so dom0 can start Linux PV guests.
#   domU.cpio.gz   Linux PV guest initramfs: busybox + xen-netfront (and
#                  hostile/hostile-netfront for xvif_hostile=1 guests); /init
#                  brings eth0 up with ip=ADDR/LEN from the kernel command line
#                  (optional ping=ADDR keeps pinging it and prints PING-OK).
#   netdd.cpio.gz  Linux PV network driver domain initramfs (for benchmarks
#                  against xvif; xen-config/linux-dd.cfg): busybox,
#                  xen-netback, bridge br0 (ip=ADDR/LEN from the command
#                  line) and a tiny shell "devd" that enslaves vifG.D to br0,
#                  writes hotplug-status=connected and removes closed
#                  backend directories. Also copied into dom0's /guests/.
#   manifest.txt   the exact .deb files (name_version, size, sha256) used
#   image.env      KVER=..., XENV=... for the harness
#
# Nothing is installed on the host: packages are fetched with `apt-get download`
# and unpacked with `dpkg-deb -x`. The result is cached in
#   ${XVIF_CACHE:-$HOME/.cache/xvif}/xen-image/<key>/
# where <key> hashes the resolved package files plus this script. A run whose
# key is already built prints the path and exits (about a second).
#
# Usage: build-image.sh [--force]     (last line of stdout: the image directory)
# Progress and timing go to stderr.
set -euo pipefail

SELF=$(readlink -f "$0")
CACHE=${XVIF_CACHE:-${HOME:-/root}/.cache/xvif}
IMGROOT=$CACHE/xen-image
XENV=4.17                 # bookworm's Xen; package names embed it
KEEP_IMAGES=3             # older keys are pruned after a fresh build
FORCE=0
[ "${1:-}" = --force ] && FORCE=1

T0=$(date +%s.%N)
el() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
log() { echo "[xen-image +$(el)s] $*" >&2; }
die() { echo "[xen-image] ERROR: $*" >&2; exit 1; }

command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || die "needs apt-get and dpkg-deb (Debian host)"

########## resolve package versions (fast, no download) ##########
APT_UPDATED=0
apt_update() {
  [ $APT_UPDATED = 0 ] || return 1
  log "apt lists incomplete: running apt-get update"
  apt-get update -qq </dev/null >&2 || die "apt-get update failed (run tests/xen/setup.sh as root)"
  APT_UPDATED=1
}

# Newest Debian 6.1 kernel (unsigned image: same kernel, no EFI signature).
# Not hard-coded: the ABI number (6.1.0-N) moves with every stable update.
find_kernel() {
  KPKG=$(apt-cache pkgnames linux-image-6.1.0- 2>/dev/null |
         grep -E '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$' | sort -V | tail -1 || true)
  if [ -z "$KPKG" ]; then
    # fall back to what the linux-image-amd64 metapackage depends on
    KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null |
           sed -n 's/^ *Depends: \(linux-image-6\.1\.0-[0-9]*-amd64\(-unsigned\)\?\)$/\1/p' | sort -V | tail -1)
  fi
}
find_kernel
if [ -z "$KPKG" ]; then apt_update && find_kernel; fi
[ -n "$KPKG" ] || die "cannot find a linux-image-6.1.0-N-amd64 package in the apt lists"
KVER=${KPKG#linux-image-}; KVER=${KVER%-unsigned}

# The device model libxl starts for HVM guests (xen-config/xvif-hvm.cfg):
# bookworm's qemu-system-xen (libxl runs /usr/libexec/xen-qemu-system-i386),
# the SeaBIOS image libxl reads for every qemu-xen HVM guest even with
# firmware= (/usr/share/seabios/bios-256k.bin), the iPXE ROMs QEMU loads into
# the emulated NICs' ROM BARs (QEMU's firmware path has /usr/lib/ipxe/qemu),
# the en-us keymap QEMU reads even with `-vnc none` (qemu-system-data),
# and the libraries the qemu binary links (spice pulls in gstreamer, ssl and
# libstdc++; copy_bin takes only the files actually needed).
DM_PKGS=(qemu-system-xen qemu-system-data seabios ipxe-qemu libspice-server1 libgstreamer1.0-0
         libgstreamer-plugins-base1.0-0 liborc-0.4-0 libopus0 libssl3 libsasl2-2 libstdc++6
         liblz4-1 libglib2.0-0 libpcre2-8-0 libffi8 libmount1 libselinux1 libblkid1 libfdt1
         libjpeg62-turbo libpixman-1-0 libusb-1.0-0 libudev1 libunwind8 libdw1 libelf1
         libbz2-1.0 libcap2)
PKGS=(xen-hypervisor-$XENV-amd64 xen-utils-$XENV xen-utils-common xenstore-utils
      libxenmisc$XENV libxenstore4 libxentoolcore1 libxentoollog1 libxencall1
      libxenevtchn1 libxenforeignmemory1 libxengnttab1 libxendevicemodel1 libxenhypfs1
      libyajl2 libext2fs2 liblzma5 libuuid1 libzstd1 zlib1g libncurses6 libtinfo6
      libc6 libgcc-s1 "$KPKG" busybox-static bash util-linux
      "${DM_PKGS[@]}")

uris=$(apt-get download --print-uris "${PKGS[@]}" 2>/dev/null) ||
  { apt_update && uris=$(apt-get download --print-uris "${PKGS[@]}" 2>/dev/null); } ||
  die "apt-get cannot resolve: ${PKGS[*]} (apt-get update? see tests/xen/setup.sh)"
# "'URI' file size hash": keep only file/size/hash (never write the URI anywhere)
MANIFEST=$(awk '{print $2, $3, $4}' <<<"$uris" | sort)
[ "$(wc -l <<<"$MANIFEST")" -eq ${#PKGS[@]} ] || die "expected ${#PKGS[@]} packages, apt resolved: $MANIFEST"
# hostile/: the user-space netfront built into the domU image (its source is in the key)
HOSTILE_DIR=$(dirname "$SELF")/hostile
KEY=$( { printf '%s\n' "$MANIFEST"; sha256sum <"$SELF"; cat "$HOSTILE_DIR"/build.sh "$HOSTILE_DIR"/*.c | sha256sum; } |
       sha256sum | cut -c1-16)
OUT=$IMGROOT/$KEY

if [ $FORCE = 0 ] && [ -f "$OUT/.complete" ]; then
  log "cached image (key $KEY, $KPKG): $OUT"
  echo "$OUT"; exit 0
fi

mkdir -p "$IMGROOT"
exec 9>"$IMGROOT/.lock"
log "waiting for build lock" ; flock 9
if [ $FORCE = 0 ] && [ -f "$OUT/.complete" ]; then    # built by someone else meanwhile
  log "cached image (key $KEY): $OUT"; echo "$OUT"; exit 0
fi
log "building image key $KEY (kernel $KVER, Xen $XENV) in $IMGROOT"

WORK=$(mktemp -d "$IMGROOT/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
S=$WORK/stage
mkdir -p "$WORK/debs" "$S" "$WORK/out"

########## download + unpack ##########
( cd "$WORK/debs" && apt-get download -q -o APT::Sandbox::User=root "${PKGS[@]}" </dev/null >/dev/null 2>"$WORK/download.err" ) ||
  { cat "$WORK/download.err" >&2; die "apt-get download failed"; }
got=$(cd "$WORK/debs" && for f in *.deb; do echo "$f"; done | sort)
want=$(awk '{print $1}' <<<"$MANIFEST" | sort)
[ "$got" = "$want" ] || die "downloaded files differ from the resolved manifest:
$(diff <(echo "$want") <(echo "$got") || true)"
log "downloaded $(du -sh "$WORK/debs" | cut -f1) in ${#PKGS[@]} packages"
for d in "$WORK"/debs/*.deb; do dpkg-deb -x "$d" "$S"; done
log "unpacked"

BB=$S/bin/busybox
[ -x "$BB" ] || die "busybox-static did not unpack bin/busybox"
LDSO=$S/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
LIBPATH=$S/lib/x86_64-linux-gnu:$S/usr/lib/x86_64-linux-gnu:$S/usr/lib/xen-$XENV/lib/x86_64-linux-gnu
MODDIR=$S/lib/modules/$KVER
[ -d "$MODDIR" ] || die "no modules dir for $KVER"

gunzip -c "$S/boot/xen-$XENV-amd64.gz" >"$WORK/out/xen"
cp "$S/boot/vmlinuz-$KVER" "$WORK/out/vmlinuz"

# copy_bin ROOT PATH-IN-STAGE: the file (same path) and every shared library it
# needs, resolved inside the stage only (a library missing there is an error,
# never silently taken from the host).
copy_bin() {
  local R=$1 f=$2 lib rel list
  [ -e "$S/$f" ] || die "copy_bin: $f not in stage"
  mkdir -p "$R/$(dirname "$f")"; cp -L "$S/$f" "$R/$f"
  file_is_elf "$S/$f" || return 0
  list=$(LD_LIBRARY_PATH=$LIBPATH "$LDSO" --list "$S/$f" 2>&1) || true
  if grep -q 'not found' <<<"$list"; then die "copy_bin $f: missing libraries:
$list"; fi
  while read -r lib; do
    case "$lib" in "$S"/*) ;; *) die "copy_bin $f: $lib resolved outside the stage";; esac
    rel=${lib#"$S"/}
    [ -e "$R/$rel" ] && continue
    mkdir -p "$R/$(dirname "$rel")"; cp -L "$lib" "$R/$rel"
  done < <(awk '$2=="=>" && $3 ~ /^\// {print $3}' <<<"$list")
  # the ELF interpreter (/lib64/ld-linux-x86-64.so.2, an absolute symlink in
  # the stage): the loader itself plus the same symlink in the root
  local interp target
  interp=$(awk '$1 ~ /^\// {print $1}' <<<"$list" | head -1)
  if [ -n "$interp" ] && [ ! -e "$R$interp" ]; then
    if [ -L "$S$interp" ]; then
      target=$(readlink "$S$interp")
      case "$target" in /*) ;; *) target=$(dirname "$interp")/$target;; esac
      mkdir -p "$R$(dirname "$target")" "$R$(dirname "$interp")"
      cp -L "$S$target" "$R$target"; ln -sf "$target" "$R$interp"
    else
      mkdir -p "$R$(dirname "$interp")"; cp -L "$S$interp" "$R$interp"
    fi
  fi
}
file_is_elf() { [ "$(head -c4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ]; }

# copy_mods ROOT MODULE...: modules plus their depends= closure, then depmod
copy_mods() {
  local R=$1; shift
  local -A seen=()
  local queue=("$@") m f deps d
  while [ ${#queue[@]} -gt 0 ]; do
    m=${queue[0]}; queue=("${queue[@]:1}"); m=${m//-/_}
    [ -n "${seen[$m]:-}" ] && continue; seen[$m]=1
    f=$(find "$MODDIR/kernel" \( -name "$m.ko*" -o -name "${m//_/-}.ko*" \) | head -1)
    if [ -z "$f" ]; then
      grep -qE "/(${m}|${m//_/-})\.ko" "$MODDIR/modules.builtin" || die "module $m: neither a .ko nor built in"
      continue
    fi
    mkdir -p "$R/$(dirname "${f#"$S"/}")"; cp "$f" "$R/${f#"$S"/}"
    deps=$("$BB" modinfo -F depends "$f" 2>/dev/null || "$BB" strings -a "$f" | sed -n 's/^depends=//p' | head -1)
    for d in ${deps//,/ }; do queue+=("$d"); done
  done
  cp "$MODDIR/modules.order" "$MODDIR/modules.builtin" "$R/lib/modules/$KVER/"
  "$BB" depmod -b "$R" "$KVER"
}

mkroot() {
  local R=$1 a
  mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,var/log,var/lib,etc,root,lib/modules/$KVER}
  ln -s ../run "$R/var/run"
  cp "$BB" "$R/bin/busybox"
  for a in $("$BB" --list); do [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"; done
  echo "root::0:0:root:/root:/bin/sh" >"$R/etc/passwd"
  echo "root:x:0:" >"$R/etc/group"
}

mkcpio() { # ROOT OUTFILE (newc, root-owned, gzip -6)
  ( cd "$1" && find . | LC_ALL=C sort | "$BB" cpio -o -H newc 2>/dev/null | gzip -6 -n ) >"$2"
}

########## domU (Linux PV guest) root ##########
R=$WORK/root-domU; mkroot "$R"
copy_mods "$R" xen-netfront xen-gntalloc xen-evtchn
# xvif_hostile=1 guests run hostile-netfront instead of netfront
bash "$HOSTILE_DIR/build.sh" "$R/usr/bin/hostile-netfront" || die "building hostile-netfront failed"
# xenstore tools: the guest's command agent reads commands from its own
# data/ directory (the test harness writes them from dom0).
for b in xenstore-read xenstore-write xenstore-watch; do copy_bin "$R" "usr/bin/$b"; done
cat >"$R/init" <<'EOF'
#!/bin/sh
# Linux PV test guest. Kernel command line: ip=ADDR/LEN or ip=dhcp [ping=ADDR]
# [nfqueues=N] (netfront's max_queues: N > 1 asks the backend for N queues)
# [xvif_hostile=1] (no netfront: xen-gntalloc and xen-evtchn for
# /usr/bin/hostile-netfront, which plays the frontend; tests/xen/hostile/)
export PATH=/usr/bin:/bin:/sbin:/usr/sbin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /tmp; mount -t tmpfs tmpfs /tmp
IP=; PING=; NFQ=; HOSTILE=
for a in $(cat /proc/cmdline); do
  case $a in ip=*) IP=${a#ip=};; ping=*) PING=${a#ping=};; nfqueues=*) NFQ=${a#nfqueues=};;
    xvif_hostile=*) HOSTILE=${a#xvif_hostile=};; esac
done
if [ "$HOSTILE" = 1 ]; then
  modprobe xen-gntalloc; modprobe xen-evtchn
  echo "XVIF-DOMU-HOSTILE gntalloc=$([ -c /dev/xen/gntalloc ] && echo yes || echo no)" \
       "evtchn=$([ -c /dev/xen/evtchn ] && echo yes || echo no) xenbus=$([ -c /dev/xen/xenbus ] && echo yes || echo no)"
else
  modprobe xen-netfront ${NFQ:+max_queues=$NFQ}
  # under TCG netfront can take many seconds to probe
  for i in $(seq 1 120); do [ -e /sys/class/net/eth0 ] && break; sleep 1; done
fi
ip link set lo up
if [ "$HOSTILE" = 1 ]; then
  :
elif [ -e /sys/class/net/eth0 ] && [ "$IP" = dhcp ]; then
  # busybox udhcpc; the script sets the address and prints XVIF-DOMU-DHCP
  printf '%s\n' '#!/bin/sh' 'case $1 in bound|renew)' \
    '  ip addr flush dev $interface; ip addr add $ip/$mask dev $interface' \
    '  echo "XVIF-DOMU-DHCP $interface ip=$ip/$mask server=$serverid" >/dev/console;; esac' >/tmp/dhcp.sh
  chmod +x /tmp/dhcp.sh
  ip link set eth0 up
  udhcpc -i eth0 -b -t 3 -T 2 -s /tmp/dhcp.sh >/dev/null 2>&1
  echo "XVIF-DOMU-UP eth0 ip=dhcp mac=$(cat /sys/class/net/eth0/address)"
elif [ -e /sys/class/net/eth0 ]; then
  [ -n "$IP" ] && ip addr add "$IP" dev eth0
  ip link set eth0 up
  echo "XVIF-DOMU-UP eth0 ip=$IP mac=$(cat /sys/class/net/eth0/address)"
else
  echo "XVIF-DOMU-NOETH0 (no netfront device after 120 s)"
fi
ip addr
# Hot-plugged netfront devices (xl network-attach after a detach) come up
# with the same address: a new device (an ifindex not seen before) with no
# IPv4 address gets $IP. Idle, the loop reads sysfs with shell builtins
# only: under nested emulation every process a guest starts costs dom0 and
# the other guests real time, and a guest with 8 vifs forking `ip` twice
# per device every second kept half a CPU busy.
if [ -n "$IP" ] && [ "$IP" != dhcp ]; then
  ( seen=" "
    while true; do
      for d in /sys/class/net/eth*; do
        [ -e "$d" ] || continue
        read -r idx < "$d/ifindex" 2>/dev/null || continue
        case "$seen" in *" $idx "*) continue;; esac
        seen="$seen$idx "; d=${d##*/}
        if ! ip -4 addr show dev "$d" | grep -q inet; then
          ip addr add "$IP" dev "$d" && ip link set "$d" up && echo "XVIF-DOMU-HOTPLUG $d ip=$IP"
        fi
      done
      sleep 1
    done ) &
fi
if [ -n "$PING" ]; then
  ( for i in $(seq 1 300); do
      if ping -c1 -W1 "$PING" >/dev/null 2>&1; then echo "PING-OK $PING after $i tries"; ping -c3 "$PING"; break; fi
      sleep 1
    done ) &
fi
# Command agent: dom0 writes data/cmd = "ID:shell command"; the agent runs
# each new ID once, prints the output between markers on the console and
# writes data/result = "ID:rc".
# It waits on a xenstore watch, not a polling loop (see the hotplug loop
# above for why idle guests must not fork). The watch fires once when set
# and on every write; `timeout`s make a watch or read stuck after a
# neighbour's crash end, and the loop then sets a new watch and looks again.
# The agent loop restarts if its shell dies (busybox has been seen to
# segfault in nested guests on a loaded host).
( while true; do ( while true; do
    timeout 60 xenstore-watch data/cmd 2>/dev/null | while read -r _; do
      c=$(timeout 20 xenstore-read data/cmd 2>/dev/null); last=
      read -r last < /tmp/agent.last 2>/dev/null
      if [ -n "$c" ] && [ "$c" != "$last" ]; then
        id=${c%%:*}; cmd=${c#*:}
        sh -c "$cmd" >/tmp/out.$id 2>&1; rc=$?
        echo "XVIF-CMD-BEGIN $id"; cat /tmp/out.$id; echo "XVIF-CMD-END $id rc=$rc"
        timeout 20 xenstore-write data/result "$id:$rc" || timeout 20 xenstore-write data/result "$id:$rc"
        echo "$c" > /tmp/agent.last
      fi
    done
    sleep 0.5
  done ); echo "XVIF-AGENT-RESTART rc=$?"; sleep 1; done ) &
echo "XVIF-AGENT-UP"
exec setsid cttyhack sh
EOF
chmod +x "$R/init"
mkcpio "$R" "$WORK/out/domU.cpio.gz"
log "domU.cpio.gz $(du -h "$WORK/out/domU.cpio.gz" | cut -f1)"

########## netdd (Linux PV network driver domain) root ##########
# Linux netback + a bridge, with no toolstack: nothing writes
# hotplug-status=connected for a backend outside dom0 (that is `xl devd`'s
# and vif-bridge's job), so a shell loop does the minimum: enslave each new
# vifG.D to br0 and write hotplug-status; when the toolstack has set
# online=0 and the backend reached state 6 (closed), remove the backend
# directory (dom0's libxl waits for that on `xl destroy`/network-detach).
R=$WORK/root-netdd; mkroot "$R"
# xen-pcifront + e1000: a NIC given by PV passthrough (pci=[...]) joins br0
copy_mods "$R" xen-netback bridge xen-pcifront e1000
for b in xenstore-read xenstore-write xenstore-list xenstore-rm xenstore-exists xenstore-watch; do copy_bin "$R" "usr/bin/$b"; done
cat >"$R/init" <<'EOF'
#!/bin/sh
# Linux network driver domain. Kernel command line: ip=ADDR/LEN (for br0)
export PATH=/usr/bin:/bin:/sbin:/usr/sbin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /tmp; mount -t tmpfs tmpfs /tmp
IP=
for a in $(cat /proc/cmdline); do case $a in ip=*) IP=${a#ip=};; esac; done
modprobe xen-netback; modprobe bridge
ip link set lo up
brctl addbr br0   # (busybox brctl here lacks stp/setfd: use sysfs)
echo 0 >/sys/class/net/br0/bridge/stp_state; echo 0 >/sys/class/net/br0/bridge/forward_delay
[ -n "$IP" ] && ip addr add "$IP" dev br0
ip link set br0 up
# A NIC passed through to this domain (pci=[...] in its config) is on the
# bridge with the vifs: guests behind netback reach that NIC's wire.
modprobe xen-pcifront
if grep -qx 0x100e /sys/bus/pci/devices/*/device 2>/dev/null; then
  modprobe e1000
  for i in $(seq 1 50); do ls /sys/class/net | grep -q '^eth' && break; sleep 0.1; done
  for d in /sys/class/net/eth*; do
    [ -e "$d" ] || continue; d=${d##*/}
    brctl addif br0 "$d"; ip link set "$d" up; echo "netdd: $d on br0"
  done
fi
echo "XVIF-NETDD-UP $(uname -r) domid=$(xenstore-read domid) br0=$IP"
# scan: one pass over the backends; WAIT=1 when a backend has no vif
# device yet (netback creates it just after writing state 2) or a closed
# one is still in its grace period.
scan() {
  WAIT=
  for fe in $(xenstore-list backend/vif 2>/dev/null); do
    for dev in $(xenstore-list backend/vif/$fe 2>/dev/null); do
      p=backend/vif/$fe/$dev
      st=$(xenstore-read $p/state 2>/dev/null); on=$(xenstore-read $p/online 2>/dev/null)
      if [ "$st" = 6 ] && [ "$on" != 1 ]; then
        # As xvif does (REMOVE_GRACE_NS): state 6 stays visible about 2 s,
        # for a toolstack that reads it late; uptime read without a fork.
        read -r now _ < /proc/uptime; now=${now%.*}
        [ -e /tmp/closed.$fe.$dev ] || echo "$now" > /tmp/closed.$fe.$dev
        read -r since < /tmp/closed.$fe.$dev
        if [ $((now - since)) -lt 3 ]; then WAIT=1; continue; fi
        rm -f /tmp/closed.$fe.$dev
        xenstore-rm $p; echo "netdd-devd: $p closed, removed"
        [ -z "$(xenstore-list backend/vif/$fe 2>/dev/null)" ] && xenstore-rm backend/vif/$fe
        continue
      fi
      [ "$(xenstore-read $p/hotplug-status 2>/dev/null)" = connected ] && continue
      [ -e /sys/class/net/vif$fe.$dev ] || { WAIT=1; continue; }
      brctl addif br0 vif$fe.$dev; ip link set vif$fe.$dev up
      xenstore-write $p/hotplug-status connected
      echo "netdd-devd: $p -> vif$fe.$dev on br0, hotplug-status=connected"
    done
  done
}
# Driven by a watch on the backends, not a polling loop, so that an idle
# driver domain forks nothing (a benchmark against it measures netback,
# not this script); the watch fires once when set, and is set again at
# least every minute.
( while true; do
    timeout 60 xenstore-watch backend/vif 2>/dev/null | while read -r _; do
      scan; n=0
      while [ -n "$WAIT" ] && [ $n -lt 20 ]; do sleep 0.5; scan; n=$((n + 1)); done
    done
    sleep 0.5
  done ) &
echo "XVIF-NETDD-DEVD-UP"
exec setsid cttyhack sh
EOF
chmod +x "$R/init"
mkcpio "$R" "$WORK/out/netdd.cpio.gz"
log "netdd.cpio.gz $(du -h "$WORK/out/netdd.cpio.gz" | cut -f1)"

########## dom0 root ##########
R=$WORK/root-dom0; mkroot "$R"
copy_mods "$R" xen-evtchn xen-gntdev xen-gntalloc xenfs xen-privcmd xen-netback xen-netfront \
  bridge xen-pciback xen-blkback tun e1000
XB=usr/lib/xen-$XENV/bin
for b in xl xenstored xenconsoled xenconsole xen-init-dom0 xenstore-control libxl-save-helper \
         xenctx readnotes lsevtchn xentop xen-diag init-xenstore-domain; do
  copy_bin "$R" "$XB/$b"
done
for b in xenstore xenstore-chmod xenstore-exists xenstore-list xenstore-ls xenstore-read \
         xenstore-rm xenstore-watch xenstore-write xen-detect; do
  copy_bin "$R" "usr/bin/$b"
done
copy_bin "$R" bin/bash
copy_bin "$R" usr/bin/flock
# qemu-xen, the device model of HVM guests (see DM_PKGS above)
copy_bin "$R" usr/libexec/xen-qemu-system-i386
mkdir -p "$R/usr/share/seabios" "$R/usr/lib/ipxe/qemu"
cp "$S/usr/share/seabios/bios-256k.bin" "$R/usr/share/seabios/"
cp "$S/usr/lib/ipxe/qemu/efi-e1000.rom" "$S/usr/lib/ipxe/qemu/efi-virtio.rom" "$R/usr/lib/ipxe/qemu/"
mkdir -p "$R/usr/share/qemu/keymaps"
cp "$S/usr/share/qemu/keymaps/en-us" "$R/usr/share/qemu/keymaps/"
# glibc dlopen()s libgcc_s for pthread_cancel: without it `xl create` aborts
# with signal 6 ("libgcc_s.so.1 must be installed for pthread_cancel to work").
cp -L "$S/lib/x86_64-linux-gnu/libgcc_s.so.1" "$R/lib/x86_64-linux-gnu/"
[ -d "$S/usr/lib/xen-$XENV/boot" ] && cp -a "$S/usr/lib/xen-$XENV/boot" "$R/usr/lib/xen-$XENV/"
mkdir -p "$R/etc/xen" "$R/var/lib/xen" "$R/var/log/xen/console" "$R/guests"
cp -a "$S/etc/xen/scripts" "$S/etc/xen/xl.conf" "$R/etc/xen/"
cp "$WORK/out/vmlinuz" "$WORK/out/domU.cpio.gz" "$WORK/out/netdd.cpio.gz" "$R/guests/"
cat >"$R/init" <<EOF
#!/bin/sh
export PATH=/usr/lib/xen-$XENV/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb
KVER=$KVER
EOF
cat >>"$R/init" <<'EOF'
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm; mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
# /var/lock: xenconsole (`xl console`) takes its lock file there
mkdir -p /run/xen /run/xenstored /var/lib/xen /var/log/xen/console /var/lock
t0=$(cut -d' ' -f1 /proc/uptime)
# tun: qemu-xen's tap for an HVM guest's emulated NIC
for m in xen-evtchn xen-gntdev xen-gntalloc xenfs xen-privcmd xen-netback bridge xen-pciback tun; do
  modprobe $m || echo "dom0-init: modprobe $m failed"
done
mount -t xenfs xenfs /proc/xen
echo "dom0-init: kernel $(uname -r), capabilities: $(cat /proc/xen/capabilities)"
# -T: xenstored's access trace, handy when debugging the driver-domain handshake
xenstored --pid-file /run/xenstored.pid -T /var/log/xen/xenstored-trace.log ||
  xenstored --pid-file /run/xenstored.pid || echo "dom0-init: xenstored FAILED"
xen-init-dom0 || echo "dom0-init: xen-init-dom0 FAILED"
# guest consoles are logged to /var/log/xen/console/guest-NAME.log
xenconsoled --pid-file=/run/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console ||
  echo "dom0-init: xenconsoled FAILED"
brctl addbr xenbr0   # (busybox brctl here lacks stp/setfd: use sysfs)
echo 0 >/sys/class/net/xenbr0/bridge/stp_state; echo 0 >/sys/class/net/xenbr0/bridge/forward_delay
ip addr add 10.0.0.1/24 dev xenbr0; ip link set xenbr0 up; ip link set lo up
# The outer machine's e1000 (xenvm.py's outer_net=True: a wire to a peer
# outside Xen) joins bridge xenbr1, where qemu-xen's taps of HVM guests with
# bridge=xenbr1 land. dom0 takes no address and sends nothing on that wire.
# With xvif_outer=pt on dom0's command line (XenVM(iommu=...)) the e1000 is
# for passthrough instead: dom0 leaves it unbound, for xl pci-assignable-add.
if grep -qw xvif_outer=pt /proc/cmdline; then
  echo "dom0-init: outer e1000 left for passthrough: $(grep -lx 0x100e /sys/bus/pci/devices/*/device | cut -d/ -f6 | tr '\n' ' ')"
elif grep -qx 0x100e /sys/bus/pci/devices/*/device 2>/dev/null; then
  modprobe e1000 || echo "dom0-init: modprobe e1000 failed"
  for i in $(seq 1 50); do ls /sys/class/net | grep -q '^eth' && break; sleep 0.1; done
  brctl addbr xenbr1
  echo 0 >/sys/class/net/xenbr1/bridge/stp_state; echo 0 >/sys/class/net/xenbr1/bridge/forward_delay
  for d in /sys/class/net/eth*; do
    [ -e "$d" ] || continue; d=${d##*/}
    echo 1 >/proc/sys/net/ipv6/conf/$d/disable_ipv6
    brctl addif xenbr1 "$d"; ip link set "$d" up
  done
  echo 1 >/proc/sys/net/ipv6/conf/xenbr1/disable_ipv6
  ip link set xenbr1 up
  echo "dom0-init: xenbr1 = $(ls /sys/class/net/xenbr1/brif | tr '\n' ' ')"
fi
echo "XVIF-DOM0-READY uptime=$(cut -d' ' -f1 /proc/uptime) (toolstack start at $t0)"
if [ -f /guests/autorun.sh ]; then
  echo "dom0-init: running /guests/autorun.sh"
  sh /guests/autorun.sh; echo "dom0-init: autorun.sh exited rc=$?"
fi
export PS1='dom0# ' ENV=/etc/xvif-console.sh
# The shell must NOT be PID 1: orphans (e.g. xl's per-domain monitor process)
# are reparented to PID 1, and a shell that exits (EOF, EINTR) as PID 1 panics
# dom0. This loop reaps orphans and respawns the shell if it ever exits.
while :; do
  setsid cttyhack sh
  echo "dom0-init: console shell exited (rc=$?), starting a new one"
done
EOF
chmod +x "$R/init"
# Helpers for xenvm.py (read by every interactive console shell via $ENV).
# Xen keeps only 128 bytes of serial input for dom0 and drops the rest
# silently, so xenvm never has more than one short line in flight: it frames
# commands with short calls, and ships long ones in acknowledged pieces.
cat >"$R/etc/xvif-console.sh" <<'EOF'
_b() { echo "__XVB${1}__"; }                      # begin marker
_e() { echo "__XVE${1}__ rc=${2}"; }              # end marker + status
_z() { : >/tmp/.xvc; echo "__XVA${1}__"; }        # start an upload
_a() { echo "$1" >>/tmp/.xvc; echo "__XVA${2}__"; }   # append a base64 piece
_w() { base64 -d /tmp/.xvc >"$1"; }               # decode the upload to a file
_r() { base64 -d /tmp/.xvc >/tmp/.xvs && . /tmp/.xvs; }  # run it in this shell
EOF
mkcpio "$R" "$WORK/out/dom0.cpio.gz"
log "dom0.cpio.gz $(du -h "$WORK/out/dom0.cpio.gz" | cut -f1) ($(du -sh "$R" | cut -f1) unpacked)"

########## publish ##########
printf '%s\n' "$MANIFEST" >"$WORK/out/manifest.txt"
printf 'KEY=%s\nKVER=%s\nKPKG=%s\nXENV=%s\n' "$KEY" "$KVER" "$KPKG" "$XENV" >"$WORK/out/image.env"
rm -rf "$OUT"
mv "$WORK/out" "$OUT"
touch "$OUT/.complete"
# prune: keep the newest $KEEP_IMAGES complete images
ls -1dt "$IMGROOT"/*/ 2>/dev/null | tail -n +$((KEEP_IMAGES + 1)) | while read -r old; do
  log "pruning old image $old"; rm -rf "$old"
done
log "done: $OUT ($(du -sh "$OUT" | cut -f1)), total $(el)s"
echo "$OUT"
