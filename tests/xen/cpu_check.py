#!/usr/bin/env python3
"""Does an outer QEMU CPU model corrupt the nested Xen's PV user space?

    python3 tests/xen/cpu_check.py 'qemu64,+svm,+npt' [TRANSFERS] [XEN OPTIONS]

Boots Xen with `-cpu MODEL`, starts two Linux PV guests on dom0's own bridge
xenbr0 (no xvif involved), moves TRANSFERS (default 4) x 20 MB over TCP
from one to the other (md5 checked; the receiver is destroyed and created
again after each), and prints one RESULT line: the model, the unique crash
lines found on the serial console (Xen + dom0) and the guest consoles
(guests.CRASH_RX), the intact transfers and the wall time. This is how the
`xsave` culprit of `-cpu max` was found (README.md in this directory)."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guests import Guest, crash_lines, scan_logs, xl_create  # noqa: E402
from xenvm import XenVM  # noqa: E402


class BridgeGuest(Guest):
    """A Linux PV guest whose vif is on dom0's bridge xenbr0."""

    def create(self):
        self.xen.sh("rm -f %s" % self.console, quiet=True)
        xl_create(self.xen, "/guests/guest-linux-pv.cfg 'name=\"%s\"' 'extra=\"console=hvc0 rdinit=/init "
                            "ip=%s/24\"' 'vif=[\"bridge=xenbr0,mac=%s\"]'" % (self.name, self.ip, self.mac), self.name)
        self.wait_up()


def transfer(a, b, port):
    b.run("rm -f /tmp/rx; sleep 600 | nc -l -p %d > /tmp/rx 2>/dev/null &" % port)
    rc, out = a.run("[ -s /tmp/tx ] || dd if=/dev/urandom of=/tmp/tx bs=1M count=20 2>/dev/null; md5sum /tmp/tx")
    md5 = out.split()[0] if out.split() else "?"
    a.run("nc -w 30 %s %d < /tmp/tx" % (b.ip, port), timeout=900)
    deadline = time.time() + 120
    while time.time() < deadline:
        rc, out = b.run("md5sum /tmp/rx")
        if md5 in out:
            return True
        time.sleep(5)
    return False


def main():
    cpu = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    xen_extra = sys.argv[3] if len(sys.argv) > 3 else ""
    xen_config = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                              "xen-config", "guest-linux-pv.cfg")
    t0 = time.time()
    vm = XenVM(guest_files=[xen_config], cpu=cpu, xen_extra=xen_extra, echo=False)
    vm.boot()
    found, ok = [], 0
    try:
        a = BridgeGuest(vm, "cpua", "10.0.0.2", "00:16:3e:00:01:0a")
        b = BridgeGuest(vm, "cpub", "10.0.0.3", "00:16:3e:00:01:0b")
        try:
            a.create()
            for i in range(n):
                if b.domid is None:
                    b.create()
                ok += transfer(a, b, 5000 + i)
                found += scan_logs(vm, [a.console, b.console])
                vm.sh("xl destroy %s" % b.name, timeout=120)
        except Exception as e:      # a crash can take the guest or xl with it
            print("stopped early: %s" % str(e).splitlines()[0], file=sys.stderr)
            found += scan_logs(vm, ["/var/log/xen/console/*.log"]) if vm.ready else []
    finally:
        vm.close(quiet=True)
    found += crash_lines(vm.serial_since(0))
    unique = sorted({l.split(":", 1)[-1].strip() for l in found})
    print("RESULT cpu=%s xen=%r crash_lines=%d transfers_intact=%d/%d wall=%.0fs log=%s" % (
        cpu, xen_extra, len(unique), ok, n, time.time() - t0, vm.log_dir))
    for line in unique[:20]:
        print("  " + line)


if __name__ == "__main__":
    main()
