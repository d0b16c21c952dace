#!/usr/bin/env python3
"""`make run`: boots Xen 4.17 + a Linux dom0 in QEMU (TCG), starts xvif as a
PVH network driver domain with a management address, starts a Linux PV guest
whose network is served by xvif, and hands you dom0's console.

The steps are `run_demo(vm)`; tests/xen/test_demo.py runs the same steps
and what the printed hints promise, so the demo cannot break unnoticed."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guests import Guest, start_xvif  # noqa: E402

XVIF_IP = "10.0.1.1"
GUEST_IP = "10.0.1.2"
GUEST_MAC = "00:16:3e:00:00:0a"

HINTS = """
You are at dom0's shell (Xen 4.17, nested in QEMU). Try:
  xl list                                   domains: Domain-0, xvif, guesta
  xl console xvif                           xvif's log (Ctrl-] leaves)
  xl console guesta                         the guest's shell (press Enter; Ctrl-] leaves); then: ping 10.0.1.1
  xenstore-ls -f /local/domain/$(xl domid xvif)/data   xvif's counters and resources
  xl network-detach guesta 0; xl network-attach guesta backend=xvif mac=00:16:3e:00:00:0a
                                            (the guest's new eth0 comes up with 10.0.1.2 by itself)
  xl shutdown xvif
Quit: Ctrl-A X (QEMU), or `poweroff -f` in dom0.
"""


def say(msg):
    print("xvif demo: " + msg, flush=True)


def run_demo(vm):
    """xvif with a management address, then one Linux PV guest served by it,
    which pings xvif. Returns the guest."""
    say("Xen and dom0 are up; starting xvif (PVH driver domain, %s/24)..." % XVIF_IP)
    start_xvif(vm, XVIF_IP)
    say("starting a Linux PV guest with vif=['backend=xvif,...'] (about 20 s under TCG)...")
    g = Guest(vm, "guesta", GUEST_IP, GUEST_MAC)
    g.create()
    sent, got, _ = g.ping(XVIF_IP, count=5, interval="0.5")
    say("guesta pinged xvif: %d/%d replies" % (got, sent))
    return g


def main():
    from conftest import guest_files
    from xenvm import XenVM
    if not os.environ.get("XVIF_ELF"):
        sys.exit("xvif demo: set XVIF_ELF to the xvif ELF (`make run` does)")
    vm = XenVM(guest_files=guest_files(), echo=False, monitor=True)
    vm.boot()
    try:
        run_demo(vm)
        print(HINTS, flush=True)
        if not sys.stdin.isatty():
            say("no terminal on stdin, so no interactive shell; stopping.")
        else:
            vm.p.sendline("")
            vm.p.logfile_read = None
            vm.p.interact(escape_character=None)
    finally:
        vm.close(quiet=True)


if __name__ == "__main__":
    main()
