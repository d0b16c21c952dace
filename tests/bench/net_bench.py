#!/usr/bin/env python3
"""UDP echo packets per second and ping RTT through each QEMU NIC model:
xvif against a Linux guest (Debian 6.1 kernel + busybox initramfs, a static
recvfrom/sendto UDP echo built from tests/bench/udp_echo.c) on the same NIC model, in the same run, same harness.

    python3 tests/bench/net_bench.py [datagrams] [pings]

The Linux kernel and busybox are fetched with `apt-get download` into
${XVIF_CACHE:-$HOME/.cache/xvif} and the initramfs is built there; nothing
is written to the repository. QEMU runs under TCG, as in the tests.
"""
import glob
import hashlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "qemu"))
from netvm import GUEST_IP, NetVM  # noqa: E402

CACHE = os.environ.get("XVIF_CACHE", os.path.expanduser("~/.cache/xvif"))
DGRAMS = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
PINGS = int(sys.argv[2]) if len(sys.argv) > 2 else 200
WINDOW = 32
SIZE = 64

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod /lib/modules/$m; done
ip link set lo up
ip addr add %s/24 dev eth0
ip link set eth0 up
/bin/udp_echo &
echo LINUX-READY
while true; do sleep 3600; done
""" % GUEST_IP


def sh(*args, **kw):
    return subprocess.run(list(args), check=True, capture_output=True, text=True, **kw).stdout


def fetch_debs():
    debs = os.path.join(CACHE, "debs")
    os.makedirs(debs, exist_ok=True)
    have = lambda pat: sorted(glob.glob(os.path.join(debs, pat)))  # noqa: E731
    if not have("linux-image-6.1.*_amd64.deb"):
        names = sh("apt-cache", "search", "--names-only", r"^linux-image-6\.1\.0-[0-9]+-amd64$").split()
        cands = sorted((n for n in names if re.match(r"linux-image-6\.1\.0-\d+-amd64$", n)),
                       key=lambda n: int(n.split("-")[3]))
        print("bench: apt-get download %s (into %s)" % (cands[-1], debs), flush=True)
        subprocess.run(["apt-get", "download", cands[-1]], cwd=debs, check=True)
    if not have("busybox-static_*.deb"):
        print("bench: apt-get download busybox-static (into %s)" % debs, flush=True)
        subprocess.run(["apt-get", "download", "busybox-static"], cwd=debs, check=True)
    return have("linux-image-6.1.*_amd64.deb")[-1], have("busybox-static_*.deb")[-1]


def build_linux():
    """Returns (vmlinuz, initramfs) paths, building the initramfs once."""
    kdeb, bdeb = fetch_debs()
    out = os.path.join(CACHE, "linux-guest")
    initrd = os.path.join(out, "initramfs.cpio.gz")
    vmlinuz = os.path.join(out, "vmlinuz")
    stamp = os.path.join(out, "stamp")
    key = " ".join([os.path.basename(kdeb), os.path.basename(bdeb), hashlib.sha256(INIT.encode() + open(os.path.join(HERE, "udp_echo.c"), "rb").read()).hexdigest()])
    if os.path.exists(stamp) and open(stamp).read() == key:
        return vmlinuz, initrd
    shutil.rmtree(out, ignore_errors=True)
    ex = os.path.join(out, "extract")
    root = os.path.join(out, "root")
    os.makedirs(ex)
    for d in (kdeb, bdeb):
        sh("dpkg-deb", "-x", d, ex)
    shutil.copy(glob.glob(os.path.join(ex, "boot", "vmlinuz-*"))[0], vmlinuz)
    moddir = glob.glob(os.path.join(ex, "lib", "modules", "*"))[0]
    # The package ships no modules.dep (depmod runs at install): read each
    # module's own "depends=" from its .modinfo strings.
    paths = {}
    for dirpath, _, files in os.walk(moddir):
        for fn in files:
            if fn.endswith(".ko"):
                paths[fn[:-3].replace("-", "_")] = os.path.join(dirpath, fn)

    def depends(name):
        data = open(paths[name], "rb").read()
        m = re.search(rb"depends=([^\0]*)\0", data)
        return [d.replace("-", "_") for d in m.group(1).decode().split(",") if d] if m else []

    order = []

    def add(name):
        if name in order or name not in paths:
            return
        for d in depends(name):
            add(d)
        order.append(name)

    for want in ("e1000", "virtio_pci", "virtio_net"):
        add(want)
    for d in ("bin", "dev", "proc", "sys", "etc", "lib/modules", "tmp"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    shutil.copy(os.path.join(ex, "bin", "busybox"), os.path.join(root, "bin", "busybox"))
    sh("gcc", "-O2", "-static", "-o", os.path.join(root, "bin", "udp_echo"), os.path.join(HERE, "udp_echo.c"))
    flat = []
    for name in order:
        shutil.copy(paths[name], os.path.join(root, "lib", "modules", name + ".ko"))
        flat.append(name + ".ko")
    with open(os.path.join(root, "modules.order"), "w") as f:
        f.write("\n".join(flat) + "\n")
    with open(os.path.join(root, "init"), "w") as f:
        f.write(INIT)
    os.chmod(os.path.join(root, "init"), 0o755)
    files = subprocess.run("find . | cpio -o -H newc --quiet | gzip -1", shell=True, cwd=root,
                           check=True, capture_output=True).stdout
    with open(initrd, "wb") as f:
        f.write(files)
    with open(stamp, "w") as f:
        f.write(key)
    shutil.rmtree(ex)
    return vmlinuz, initrd


class LinuxVM(NetVM):
    """The Linux comparison guest on the same harness (namespace, tap, NIC)."""

    def __init__(self, nic, vmlinuz, initrd):
        self.kernel_args = ["-kernel", vmlinuz, "-initrd", initrd,
                            "-append", "console=ttyS0 quiet panic=-1 net.ifnames=0"]
        super().__init__(nic, "", mem="256M")

    def qemu_kernel_args(self, append):
        return self.kernel_args


def udp_pps(vm, n):
    s = vm.udp_socket(timeout=2.0)
    payload = bytes(SIZE)
    sent = got = 0
    lost = 0
    with s:
        # Warm-up (ARP, caches).
        for _ in range(50):
            s.sendto(payload, (GUEST_IP, 7))
            s.recvfrom(2048)
        t0 = time.monotonic()
        while got + lost < n:
            while sent < n and sent - got - lost < WINDOW:
                s.sendto(payload, (GUEST_IP, 7))
                sent += 1
            try:
                s.recvfrom(2048)
                got += 1
            except socket.timeout:
                lost = sent - got  # give up on what is in flight
        dt = time.monotonic() - t0
    return got / dt, lost


def measure(vm, name, rounds=3):
    """Median over `rounds` batches, so one noisy moment on a shared machine
    does not decide the figure."""
    vm.wait_for(r"xvif ready|LINUX-READY", timeout=120)
    time.sleep(0.5)
    vm.ping(5, interval=0.05)
    pps, rtts, lost, recv, sent = [], [], 0, 0, 0
    for _ in range(rounds):
        p, l = udp_pps(vm, DGRAMS // rounds)
        pps.append(p)
        lost += l
        s, r, rtt = vm.ping(PINGS // rounds, interval=0.01)
        sent, recv = sent + s, recv + r
        rtts.append(rtt if rtt is not None else float("nan"))
    pps_m, rtt_m = statistics.median(pps), statistics.median(rtts)
    print("  %-6s %-7s UDP echo %8.0f pkt/s (median of %s; %d lost)  ping RTT avg %.3f ms (median of %s; %d/%d)" %
          (vm.nic, name, pps_m, "/".join("%.0f" % x for x in pps), lost, rtt_m,
           "/".join("%.3f" % x for x in rtts), recv, sent), flush=True)
    return pps_m, rtt_m


def main():
    vmlinuz, initrd = build_linux()
    print("bench: %d x %d-byte UDP echoes (window %d) and %d pings at 10 ms in 3 rounds (medians), QEMU TCG, q35, "
          "one tap in a netns" % (DGRAMS, SIZE, WINDOW, PINGS), flush=True)
    rows = []
    for nic in ("e1000", "virtio"):
        with NetVM(nic, "ip=%s/24" % GUEST_IP) as v:
            x = measure(v, "xvif")
        with LinuxVM(nic, vmlinuz, initrd) as v:
            lx = measure(v, "linux")
        rows.append((nic, x, lx))
    print()
    print("| NIC | xvif UDP echo pkt/s | Linux UDP echo pkt/s | ratio | xvif ping RTT ms | Linux ping RTT ms | RTT ratio (Linux/xvif) |")
    print("|---|---|---|---|---|---|---|")
    for nic, (xp, xr), (lp, lr) in rows:
        print("| %s | %.0f | %.0f | %.2fx | %.3f | %.3f | %.2fx |" % (nic, xp, lp, xp / lp, xr, lr, lr / xr))
    print("\ncommand: make bench  (python3 tests/bench/net_bench.py %d %d)" % (DGRAMS, PINGS))


if __name__ == "__main__":
    main()
