#!/usr/bin/env python3
"""xvif with a passed-through NIC against a Linux driver domain given the
same NIC the same way, in ONE nested-Xen session booted with the IOMMU
(XenVM(outer_net=True, iommu="intel"), as test_hvm_pt.py's: q35 +
intel-iommu,eim=on, the outer e1000 0000:00:05.0 handed to pciback):

    peer (namespace, 192.168.77.1) -- tap -- outer e1000 (0000:00:05.0)
      == passed through ==  xvif (HVM container, xen_pt)
                        or  linuxdd (PV, xen-pcifront + e1000 + br0)
      -- netback -- one Linux PV guest "nicg" (192.168.77.12/24, 1 queue)

    XVIF_ELF=target/x86_64-unknown-none/release/xvif \
        python3 tests/bench/xen_nicbench.py [--mb N] [--pings N] [--no-mem] [--mem-budget S]

For each driver domain, at its shipped memory= (xvif-hvm.cfg 64 MiB,
linux-dd.cfg 256 MiB):
  boot-to-ready  measured inside dom0 (/proc/uptime): from the start script
                 (xvif-hvm-start.sh: xl create -p, xenstore-write, unpause)
                 or `xl create` (linuxdd) to the console line that says the
                 domain serves: "xvif ready", or linuxdd's "netdd: eth0 on
                 br0" followed by XVIF-NETDD-DEVD-UP (its vif hotplug loop).
                 xvif's own "ready: N ms after entry" is shown too.
  guest -> peer  N MB (default 20) of TCP from busybox nc in the guest to a
                 listener in the peer's namespace; timed at the peer, from
                 accept() to the last byte; md5 compared.
  peer -> guest  N MB from the peer to `nc -l` in the guest; timed at the
                 peer from connect() to the last sendall() with a 128 KiB
                 send buffer (so at most ~256 KiB is not yet acknowledged by
                 the guest when the clock stops); size and md5 checked in
                 the guest afterwards.
  RTT            ping -c N (default 50) -i 0.2 guest -> peer, busybox's avg.
Then (unless --no-mem) the smallest memory= each works with, by trying
values below the shipped one from the lowest up: XVIF_MEMS (16 24 32) and
DD_MEMS (64 96 128 192). A value works when the domain boots to ready AND a
fresh guest behind it gets 20/20 pings to the peer; the first value that
works ends the search; when none does, the shipped value (which just passed
the measurements above, 50 pings) is the answer. The search stops trying
new values after --mem-budget seconds (default 900) and says so.

Every failure (a domain not ready, a wrong md5, a lost ping in the measured
runs) is printed as an error instead of a number, and the exit status is 1.
Results: $XVIF_CACHE/xen-runs/<run>/nicbench.json (with timings.json)."""
import argparse
import hashlib
import json
import os
import re
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "xen"))
os.environ.setdefault("XVIF_ELF", os.path.join(REPO, "target", "x86_64-unknown-none", "release", "xvif"))

from conftest import guest_files  # noqa: E402
from guests import last_line, wait_until  # noqa: E402
from nic_domains import (DD_DEFAULT_MEM, DD_MEMS, FAULTS, MIB, PEER, PT_BDF, XVIF_DEFAULT_MEM,  # noqa: E402
                         XVIF_MEMS, BenchError, check_faults, dd_start_cmd, log, make_guest, start_dd, stop,
                         xvif_start_cmd)
from xenvm import XenVM  # noqa: E402

def ping(g, count):
    """(sent, received, avg ms, min, max) of ping -i 0.2 guest -> peer."""
    sent, got, out = g.ping(PEER, count=count, interval="0.2")
    m = re.search(r"min/avg/max = ([0-9.]+)/([0-9.]+)/([0-9.]+)", out)
    return sent, got, (float(m.group(2)) if m else None), (float(m.group(1)) if m else None), \
        (float(m.group(3)) if m else None), out


# ------------------------------------------------------------ transfers

def guest_to_peer(vm, g, nbytes, port):
    """nbytes of TCP from the guest's nc to a listener at the peer, timed at
    the peer from accept() to the last byte; md5 compared with the guest's."""
    mb = nbytes // MIB
    rc, out = g.run("[ -s /tmp/tx ] || dd if=/dev/urandom of=/tmp/tx bs=1M count=%d 2>/dev/null; "
                    "md5sum /tmp/tx" % mb, timeout=600)
    m = re.search(r"^([0-9a-f]{32})\s", out, re.M)
    if rc != 0 or not m:
        raise BenchError("guest could not make its %d MB file: %s" % (mb, out))
    want = m.group(1)
    got = {"md5": hashlib.md5(), "n": 0, "t0": None, "t1": None, "err": None}
    lst = vm.outer.listener(port)
    lst.settimeout(120)

    def receive():
        try:
            conn, _ = lst.accept()
            got["t0"] = time.monotonic()
            conn.settimeout(300)
            with conn:
                while got["n"] < nbytes:
                    chunk = conn.recv(1 << 20)
                    if not chunk:
                        break
                    got["md5"].update(chunk)
                    got["n"] += len(chunk)
                got["t1"] = time.monotonic()
        except OSError as e:
            got["err"] = str(e)
    t = threading.Thread(target=receive, daemon=True)
    t.start()
    try:
        rc, out = g.run("nc -w 10 %s %d < /tmp/tx; echo nc-rc=$?" % (PEER, port), timeout=900)
        t.join(timeout=300)
    finally:
        lst.close()
    if got["n"] != nbytes or got["t1"] is None:
        raise BenchError("guest -> peer: peer got %d of %d bytes (%s); guest: %s" % (
            got["n"], nbytes, got["err"], out.strip()[-500:]))
    if got["md5"].hexdigest() != want:
        raise BenchError("guest -> peer: md5 %s at the peer, %s in the guest" % (got["md5"].hexdigest(), want))
    secs = got["t1"] - got["t0"]
    return nbytes * 8 / secs / 1e6, secs, want


def peer_to_guest(vm, g, nbytes, port):
    """nbytes from the peer to `nc -l` in the guest, timed at the peer from
    connect() to the last sendall() (send buffer 128 KiB); then the file's
    size and md5 checked in the guest."""
    rc, out = g.run("rm -f /tmp/rx; (nc -l -p %d > /tmp/rx 2>/dev/null &); echo listening" % port)
    if "listening" not in out:
        raise BenchError("guest could not listen: %s" % out)
    data = os.urandom(nbytes)
    want = hashlib.md5(data).hexdigest()
    time.sleep(1)
    with vm.outer.entered():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 128 * 1024)
        s.settimeout(300)
        t0 = time.monotonic()
        s.connect((g.ip, port))
        s.sendall(data)
        secs = time.monotonic() - t0
    except OSError as e:
        raise BenchError("peer -> guest: %s" % e)
    finally:
        s.close()
    try:
        wait_until("%d bytes in the guest's /tmp/rx" % nbytes,
                   lambda: last_line(g.run("stat -c %s /tmp/rx")[1]) == str(nbytes), timeout=300, interval=3)
    except AssertionError as e:
        raise BenchError("peer -> guest: %s (has %s)" % (e, last_line(g.run("stat -c %s /tmp/rx")[1])))
    rc, out = g.run("md5sum /tmp/rx; rm -f /tmp/rx")
    if want not in out:
        raise BenchError("peer -> guest: md5 in the guest %s, sent %s" % (out.strip(), want))
    return nbytes * 8 / secs / 1e6, secs, want


# ------------------------------------------------------------ the two paths

def measure(vm, kind, args):
    """Boot-to-ready, both transfers and the RTT through driver domain
    `kind` at its shipped memory=; the domain and guest are destroyed after."""
    mem = XVIF_DEFAULT_MEM if kind == "xvif" else DD_DEFAULT_MEM
    res = {"kind": kind, "memory": mem, "ok": False,
           "start_cmd": xvif_start_cmd(mem) if kind == "xvif" else dd_start_cmd(mem)}
    t_path = time.time()
    try:
        res["ready_s"], info = start_dd(vm, kind, mem, timeout=240)
        res.update(info)
        log("%s ready %.2f s after its start %s" % (kind, res["ready_s"], info))
        if kind == "linuxdd":
            _, out = vm.sh("xl pci-list linuxdd", quiet=True)
            if PT_BDF not in out:
                raise BenchError("linuxdd has not got %s: %s" % (PT_BDF, out))
        else:
            _, out = vm.sh("xl pci-list xvif", quiet=True)
            if PT_BDF not in out:
                raise BenchError("xvif has not got %s: %s" % (PT_BDF, out))
        g = make_guest(vm, kind)
        wait_until("the guest behind %s to reach the peer" % kind,
                   lambda: g.run("ping -c 1 -W 2 %s" % PEER)[0] == 0, timeout=120, interval=1)
        nbytes = args.mb * MIB
        res["tx_mbit"], res["tx_s"], res["tx_md5"] = guest_to_peer(vm, g, nbytes, 5002)
        log("%s guest -> peer: %.1f Mbit/s (%.2f s)" % (kind, res["tx_mbit"], res["tx_s"]))
        res["rx_mbit"], res["rx_s"], res["rx_md5"] = peer_to_guest(vm, g, nbytes, 5001)
        log("%s peer -> guest: %.1f Mbit/s (%.2f s)" % (kind, res["rx_mbit"], res["rx_s"]))
        sent, got, avg, lo, hi, out = ping(g, args.pings)
        if got != sent or avg is None:
            raise BenchError("ping guest -> peer: %d/%d answered: %s" % (got, sent, out.strip()[-300:]))
        res.update(rtt_avg=avg, rtt_min=lo, rtt_max=hi, pings=sent)
        log("%s RTT guest -> peer min/avg/max %.3f/%.3f/%.3f ms" % (kind, lo, avg, hi))
        res["ok"] = True
    except (BenchError, AssertionError) as e:
        res["error"] = str(e)[-3000:]
        log("%s FAILED: %s" % (kind, e))
    finally:
        stop(vm, "nicg", kind)
        vm.timing("%s: whole measured path" % kind, time.time() - t_path)
    # figures made while the IOMMU refused the NIC's DMA are not figures
    faults = check_faults(vm, "%s measured path" % kind)
    if faults and res["ok"]:
        res.update(ok=False, error="IOMMU fault during the measured path: " + faults[0])
    return res


def works_with(vm, kind, mem):
    """(True, "") when `kind` boots with memory=mem and a fresh guest behind
    it gets 20/20 pings to the peer; else (False, why)."""
    t0 = time.time()
    try:
        start_dd(vm, kind, mem, timeout=120 if kind == "xvif" else 180)
        g = make_guest(vm, kind, wait=150, tries=1)
        sent, got, avg, lo, hi, out = ping(g, 20)
        if got != sent or sent != 20:
            return False, "%d/%d pings answered" % (got, sent)
        return True, ""
    except (BenchError, AssertionError) as e:
        return False, str(e).splitlines()[0][:200]
    finally:
        stop(vm, "nicg", kind)
        vm.timing("%s: memory=%d tried" % (kind, mem), time.time() - t0)
        check_faults(vm, "%s memory=%d trial" % (kind, mem))


def smallest_memory(vm, kind, values, default, deadline):
    """The lowest of `values` (ascending) that works, else `default` (known
    to work: the measured run used it). Returns (MiB or None when the budget
    ran out first, [(value, ok, why)])."""
    tried = []
    for mem in sorted(v for v in values if v < default):
        if time.time() > deadline:
            log("%s: memory search budget spent before memory=%d" % (kind, mem))
            return None, tried
        ok, why = works_with(vm, kind, mem)
        log("%s memory=%d: %s" % (kind, mem, "works" if ok else "fails: " + why))
        tried.append((mem, ok, why))
        if ok:
            return mem, tried
    return default, tried


# ------------------------------------------------------------ report

def ratio(x, l, higher_better):
    """xvif / Linux, and which is better."""
    if not x or not l:
        return "-"
    r = x / l
    better = (r > 1) == higher_better if r != 1 else None
    return "%.2f (%s)" % (r, "xvif better" if better else "Linux better" if better is False else "equal")


def table(results, mem, args, cmd, load0, load1, log_dir):
    x, l = results.get("xvif", {}), results.get("linuxdd", {})
    lines = ["", "xvif vs a Linux driver domain, the same e1000 passed through the same way (VT-d, "
             "Xen 4.17 nested in QEMU TCG, 2 vCPUs; one Linux PV guest behind each, 1 vCPU, 1 queue)",
             "%-28s %16s %16s %24s" % ("", "xvif", "Linux dd", "xvif/Linux")]

    def row(label, key, fmt, higher_better):
        def cell(r):
            if not r.get("ok"):
                return "ERROR"
            return fmt % r[key] if r.get(key) is not None else "-"
        lines.append("%-28s %16s %16s %24s" % (label, cell(x), cell(l), ratio(
            x.get(key) if x.get("ok") else None, l.get(key) if l.get("ok") else None, higher_better)))
    row("guest->peer TCP (Mbit/s)", "tx_mbit", "%.1f", True)
    row("peer->guest TCP (Mbit/s)", "rx_mbit", "%.1f", True)
    row("RTT guest->peer avg (ms)", "rtt_avg", "%.3f", False)
    row("boot-to-ready (s)", "ready_s", "%.2f", False)
    mx, ml = mem.get("xvif"), mem.get("linuxdd")

    def mcell(m):
        if m is None:
            return "not searched"
        return "%d" % m["mib"] if m["mib"] is not None else "budget spent"
    lines.append("%-28s %16s %16s %24s" % ("smallest memory= (MiB)", mcell(mx), mcell(ml), ratio(
        mx and mx["mib"], ml and ml["mib"], False)))
    if x.get("ms_after_entry") is not None:
        lines.append("xvif's own count: ready %.3f ms after its entry point%s" % (
            x["ms_after_entry"], ", %d ms since reset" % x["ms_since_reset"] if "ms_since_reset" in x else ""))
    lines.append("RTT min/max (ms): xvif %s, Linux dd %s" % (
        "%.3f/%.3f" % (x["rtt_min"], x["rtt_max"]) if x.get("ok") else "-",
        "%.3f/%.3f" % (l["rtt_min"], l["rtt_max"]) if l.get("ok") else "-"))
    for kind, r in (("xvif", x), ("linuxdd", l)):
        if r.get("ok"):
            lines.append("%s: md5 guest->peer %s, peer->guest %s (both equal at both ends); %d MB in %.2f s "
                         "/ %.2f s" % (kind, r["tx_md5"], r["rx_md5"], args.mb, r["tx_s"], r["rx_s"]))
        elif r:
            lines.append("%s ERROR: %s" % (kind, r.get("error", "?")))
        lines.append("  %s started with (dom0): %s" % (kind, r.get("start_cmd", "?")))
    for kind in ("xvif", "linuxdd"):
        m = mem.get(kind)
        if m is not None:
            lines.append("  %s memory= tried: %s" % (kind, ", ".join(
                "%d %s" % (v, "ok" if ok else "FAILS (%s)" % why) for v, ok, why in m["tried"]) or
                "nothing below the shipped value") + "; shipped value %d passed the measured run" % m["default"])
    lines.append("transfers: %d MB busybox nc, guest->peer timed at the peer accept()..last byte; peer->guest "
                 "timed at the peer connect()..last sendall() (128 KiB send buffer); ping -c %d -i 0.2"
                 % (args.mb, args.pings))
    lines.append("boot-to-ready: dom0's /proc/uptime, start command -> the ready line on the console (xvif: "
                 "'xvif ready'; Linux dd: 'netdd: eth0 on br0' + XVIF-NETDD-DEVD-UP)")
    lines.append("host load average before/after: %s / %s" % (load0, load1))
    lines.append("command: " + cmd)
    lines.append("log dir: %s (serial.log, timings.json, nicbench.json)" % log_dir)
    return "\n".join(lines)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=20, help="MB per TCP transfer (default 20)")
    ap.add_argument("--pings", type=int, default=50, help="pings guest -> peer for the RTT (default 50)")
    ap.add_argument("--no-mem", action="store_true", help="skip the smallest-memory= search")
    ap.add_argument("--mem-budget", type=int, default=900,
                    help="seconds after which the memory search tries no new value (default 900)")
    args = ap.parse_args()
    cmd = "XVIF_ELF=%s python3 tests/bench/xen_nicbench.py %s" % (os.environ["XVIF_ELF"], " ".join(sys.argv[1:]))
    load0 = loadavg()
    vm = XenVM(guest_files=guest_files(), echo=False, outer_net=True, iommu="intel",
               hard_timeout=int(os.environ.get("XVIF_XEN_HARD_TIMEOUT", 2700)))
    results, mem = {}, {}
    fatal = None
    try:
        vm.boot()
        rc, out = vm.sh("xl pci-assignable-list", quiet=True)
        if PT_BDF not in out:
            rc, out = vm.sh("xl pci-assignable-add %s" % PT_BDF, timeout=120)
            if rc != 0:
                raise BenchError("xl pci-assignable-add %s: %s" % (PT_BDF, out))
        for kind in ("xvif", "linuxdd"):
            results[kind] = measure(vm, kind, args)
        if not args.no_mem:
            deadline = time.time() + args.mem_budget
            for kind, values, default in (("xvif", XVIF_MEMS, XVIF_DEFAULT_MEM),
                                          ("linuxdd", DD_MEMS, DD_DEFAULT_MEM)):
                if not results[kind]["ok"]:
                    continue      # the shipped value failed: nothing to search below
                mib, tried = smallest_memory(vm, kind, values, default, deadline)
                mem[kind] = {"mib": mib, "tried": tried, "default": default}
        # Xen's refused DMAs and unhandled interrupts (as test_hvm_pt's
        # check), each already attributed to the phase it came in
        if FAULTS:
            fatal = "Xen logged IOMMU faults or stray interrupts:\n" + "\n".join(
                "  during %s:\n    %s" % (phase, "\n    ".join(lines[:4])) for phase, lines in FAULTS)
    except Exception as e:
        fatal = "%s: %s" % (type(e).__name__, str(e)[-2000:])
        log("FAILED: " + fatal)
        try:
            vm.print_diagnostics("xen_nicbench failed", force=True)
        except Exception:
            pass
    finally:
        vm.close()
    load1 = loadavg()
    print(table(results, mem, args, cmd, load0, load1, vm.log_dir), flush=True)
    if fatal:
        print("ERROR: " + fatal, flush=True)
    with open(os.path.join(vm.log_dir, "nicbench.json"), "w") as f:
        json.dump({"command": cmd, "load_before": load0, "load_after": load1, "results": results,
                   "memory": mem, "iommu_faults": FAULTS, "error": fatal, "timings": vm.timings}, f, indent=1)
    ok = not fatal and len(results) == 2 and all(r["ok"] for r in results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
