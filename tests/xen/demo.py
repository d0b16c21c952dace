#!/usr/bin/env python3
"""`make run`: boots Xen 4.17 + a Linux dom0 in QEMU (TCG), starts xvif as a
PVH network driver domain with a management address, starts a Linux PV guest
whose network is served by xvif, and hands you dom0's console."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import guest_files  # noqa: E402
from guests import Guest, XVIF_CONSOLE, wait_until, xl_create  # noqa: E402
from xenvm import XenVM  # noqa: E402

vm = XenVM(guest_files=guest_files(), echo=False)
vm.boot()
try:
    print("xvif demo: Xen and dom0 are up; starting xvif (PVH driver domain, 10.0.1.1/24)...", flush=True)
    xl_create(vm, "/guests/xvif.cfg 'extra=\"ip=10.0.1.1/24\"' 'memory=64'", "xvif")
    wait_until("xvif ready", lambda: vm.sh("grep -c 'xvif ready' %s" % XVIF_CONSOLE, quiet=True)[0] == 0)
    print("xvif demo: starting a Linux PV guest with vif=['backend=xvif,...'] (about 20 s under TCG)...", flush=True)
    g = Guest(vm, "guesta", "10.0.1.2", "00:16:3e:00:00:0a")
    g.create()
    sent, got, _ = g.ping("10.0.1.1", count=5, interval="0.5")
    print("xvif demo: guesta pinged xvif: %d/%d replies" % (got, sent), flush=True)
    print("""
You are at dom0's shell (Xen 4.17, nested in QEMU). Try:
  xl list                                   domains: Domain-0, xvif, guesta
  xl console xvif                           xvif's log (Ctrl-] leaves)
  xl console guesta                         the guest's shell; then: ping 10.0.1.1
  xenstore-ls -f /local/domain/$(xl domid xvif)/data   xvif's counters and resources
  xl network-detach guesta 0; xl network-attach guesta backend=xvif mac=00:16:3e:00:00:0a
  xl shutdown xvif
Quit with Ctrl-A X (QEMU) or `poweroff -f`.
""", flush=True)
    if not sys.stdin.isatty():
        print("xvif demo: no terminal on stdin, so no interactive shell; stopping.")
    else:
        vm.p.sendline("")
        vm.p.logfile_read = None
        vm.p.interact(escape_character=None)
finally:
    vm.close(quiet=True)
