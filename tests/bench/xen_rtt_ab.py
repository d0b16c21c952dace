#!/usr/bin/env python3
"""Ping RTT through two xvif builds in one nested-Xen boot (A/B): for each
ELF, start xvif (10.0.1.1/24) and two Linux PV guests, then ping
guesta -> xvif's management address and guesta -> guestb, and read xvif's
own counters. For judging a change to the event path; a benchmark, it
asserts only that pings are answered.

    python3 tests/bench/xen_rtt_ab.py OLD.elf NEW.elf [pings]
"""
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "xen"))
os.environ.pop("XVIF_ELF", None)

from conftest import guest_files  # noqa: E402
from guests import XVIF_CONSOLE, Guest, wait_until, xl_create  # noqa: E402
from xenvm import XenVM  # noqa: E402

ELFS = sys.argv[1:3]
PINGS = int(sys.argv[3]) if len(sys.argv) > 3 else 50


def ping(g, target):
    rc, out = g.run("ping -c %d -i 0.2 -W 2 -q %s" % (PINGS, target), timeout=PINGS + 120)
    m = re.search(r"(\d+) packets received.*?min/avg/max = ([0-9.]+)/([0-9.]+)/([0-9.]+)", out, re.S)
    assert m, out
    return "%s/%d rcvd, min/avg/max %s/%s/%s ms" % (m.group(1), PINGS, m.group(2), m.group(3), m.group(4))


def main():
    files = guest_files() + [(e, "xvif%d.elf" % i) for i, e in enumerate(ELFS)]
    vm = XenVM(guest_files=files, echo=False)
    lines = []
    try:
        vm.boot()
        for i, elf in enumerate(ELFS):
            vm.sh("rm -f %s" % XVIF_CONSOLE, quiet=True)
            xl_create(vm, "/guests/xvif.cfg 'kernel=\"/guests/xvif%d.elf\"' 'extra=\"ip=10.0.1.1/24\"' 'memory=64'"
                      % i, "xvif")
            wait_until("xvif ready", lambda: vm.sh("grep -c 'xvif ready' %s" % XVIF_CONSOLE, quiet=True)[0] == 0)
            a = Guest(vm, "guesta", "10.0.1.2", "00:16:3e:00:00:0a")
            b = Guest(vm, "guestb", "10.0.1.3", "00:16:3e:00:00:0b")
            a.create()
            b.create()
            wait_until("a reaches b", lambda: a.run("ping -c 1 -W 2 10.0.1.3")[0] == 0, timeout=120)
            r1 = ping(a, "10.0.1.1")
            r2 = ping(a, "10.0.1.3")
            lines.append("%s\n  guesta -> xvif mgmt: %s\n  guesta -> guestb:    %s" % (elf, r1, r2))
            print(lines[-1], flush=True)
            for g in (a, b):
                g.destroy()
            vm.sh("xl destroy xvif", timeout=120)
            time.sleep(2)
    finally:
        vm.close()
    print("\n".join(["", "ping -c %d -i 0.2 (nested Xen in QEMU TCG)" % PINGS] + lines))


if __name__ == "__main__":
    main()
