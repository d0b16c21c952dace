#!/usr/bin/env python3
"""The smallest `memory=` that lets xvif serve N vifs, found by trying, and
what one vif costs. On a real Xen 4.17 nested in QEMU (tests/xen harness):
for each N, xvif is started with decreasing `memory=` values; each try
creates ceil(N/8) Linux PV guests with up to 8 vifs each (one queue per
vif) and passes when every vif connects and pings xvif 3 times out of 3.
The smallest passing value is reported (with the next one down that failed,
or "not tried" when the list ran out). The per-vif cost is read from xvif's
own resource line (heap growth per vif; receive buffers come from a shared
pool only while frames wait, shown as the pool's peak).

    XVIF_ELF=target/x86_64-unknown-none/release/xvif python3 tests/bench/xen_memory.py

A benchmark: it prints numbers; it fails only when no tried value works.
Results: $XVIF_CACHE/xen-runs/<run>/memory.json.
"""
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "xen"))
os.environ.setdefault("XVIF_ELF", os.path.join(REPO, "target", "x86_64-unknown-none", "release", "xvif"))

from conftest import guest_files  # noqa: E402
from guests import MultiVifGuest, domid, resources, start_xvif, wait_until  # noqa: E402
from xenvm import XenVM  # noqa: E402

XVIF_IP = "10.0.5.1"
# memory= values tried per vif count, largest first.
TRIES = {1: [8, 6, 4], 8: [16, 8, 6], 32: [32, 16, 12]}


def log(msg):
    print("[xen_memory] %s" % msg, file=sys.stderr, flush=True)


def destroy_all(vm, names):
    for name in names + ["xvif"]:
        if domid(vm, name) is not None:
            vm.sh("xl destroy %s" % name, timeout=120)


def try_serving(vm, n, memory):
    """One try; returns a result dict (ok, error, resources)."""
    per = min(n, 8)
    guests = [MultiVifGuest(vm, "mem%d" % i, i, per) for i in range((n + 7) // 8)]
    res = {"vifs": n, "memory": memory, "ok": False}
    t0 = time.time()
    d0 = None
    try:
        d0 = start_xvif(vm, XVIF_IP, memory=memory)
        base = resources(vm, d0)
        for g in guests:
            g.create()
        wait_until("%d vifs connected" % n, lambda: resources(vm, d0).get("vifs") == str(n), timeout=180)
        for g in guests:
            got, out = g.ping_each_vif(XVIF_IP)
            if len(got) != g.nvifs or any(v < 3 for v in got.values()):
                raise AssertionError("%s: replies per vif %s" % (g.name, got))
        if domid(vm, "xvif") != d0:
            raise AssertionError("xvif restarted")
        now = resources(vm, d0)
        res.update(ok=True, base=base, loaded=now)
    except Exception as e:  # a failed try is a result, not an error
        res["error"] = str(e).splitlines()[0][:300]
        if d0 is not None and domid(vm, "xvif") == d0:
            res["at_failure"] = resources(vm, d0)
    finally:
        destroy_all(vm, [g.name for g in guests])
    res["secs"] = round(time.time() - t0, 1)
    last = res.get("loaded") or res.get("at_failure") or {}
    log("%d vifs, memory=%d: %s (%.0f s; receive buffers %s)" % (
        n, memory, "ok" if res["ok"] else res["error"], res["secs"], last.get("rx_bufs_limit", "?")))
    return res


def main():
    cmd = "XVIF_ELF=%s python3 tests/bench/xen_memory.py" % os.environ["XVIF_ELF"]
    vm = XenVM(guest_files=guest_files(), echo=False,
               hard_timeout=int(os.environ.get("XVIF_XEN_HARD_TIMEOUT", 5400)))
    results = []
    try:
        vm.boot()
        for n, mems in TRIES.items():
            for m in mems:
                r = try_serving(vm, n, m)
                results.append(r)
                if not r["ok"]:
                    break
    finally:
        vm.close()
    lines = ["", "Smallest memory= serving N vifs (each vif pings xvif 3/3), xvif on Xen 4.17 nested in QEMU TCG",
             "%6s %10s %12s %14s %12s %12s %s" % ("vifs", "memory=", "next failed", "heap/vif KiB", "RX bufs peak",
                                                  "RX limit", "tried")]
    ok_all = True
    for n in TRIES:
        rs = [r for r in results if r["vifs"] == n]
        good = [r for r in rs if r["ok"]]
        bad = [r for r in rs if not r["ok"]]
        if not good:
            ok_all = False
            lines.append("%6d %10s %12s %14s %12s %12s %s" % (n, "none", bad[0]["memory"] if bad else "-", "-", "-",
                                                              "-", bad[0].get("error", "") if bad else ""))
            continue
        best = min(good, key=lambda r: r["memory"])
        b, l = best["base"], best["loaded"]
        heap = (int(l.get("heap", 0)) - int(b.get("heap", 0))) / 1024.0 / n
        lines.append("%6d %10d %12s %14.0f %12s %12s %s" % (
            n, best["memory"], bad[0]["memory"] if bad else "not tried", heap, l.get("rx_bufs_peak", "?"),
            l.get("rx_bufs_limit", "?"),
            " ".join("%d:%s" % (r["memory"], "ok" if r["ok"] else "no") for r in rs)))
    lines.append("heap/vif: heap growth from xvif's idle state to N vifs connected and pinged, per vif "
                 "(includes one-off state of the first vif); RX buffers are 64 KiB, shared, held only while "
                 "frames wait")
    lines.append("command: " + cmd)
    lines.append("log dir: %s (memory.json, timings.json)" % vm.log_dir)
    print("\n".join(lines), flush=True)
    with open(os.path.join(vm.log_dir, "memory.json"), "w") as f:
        json.dump({"command": cmd, "results": results, "timings": vm.timings}, f, indent=1)
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
