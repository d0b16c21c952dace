#!/usr/bin/env python3
"""Guest-to-guest TCP throughput and ping RTT on a real Xen 4.17 nested in
QEMU (tests/xen harness): through xvif as a PVH driver domain, through xvif
as the HVM container (xvif-hvm.cfg with no NIC: the same switch and netback,
behind an HVM domain's exits), and through a Linux PV driver domain
(Debian's 6.1 kernel, xen-netback + bridge br0, image /guests/netdd.cpio.gz,
config xen-config/linux-dd.cfg), in the same boot. XVIF_NETBENCH_PATHS
picks the paths (default "xvif xvif-hvm linuxdd").

    XVIF_ELF=target/x86_64-unknown-none/release/xvif \
        python3 tests/bench/xen_netbench.py [MB] [reps] [pings]

Defaults: 50 MB per transfer, 3 repetitions, 50 pings (-i 0.2) per repetition;
medians are reported. For each path: create the driver domain (10.0.1.1/24)
and two Linux PV guests (guesta 10.0.1.2 -> guestb 10.0.1.3, stock
xen-netfront) with backend=<driver domain>; the transfer is busybox nc timed
inside guesta (/proc/uptime before/after; nc exits after guestb has read
everything and closed), its md5 checked at guestb; then everything is
destroyed before the next path. A benchmark: it prints numbers and fails only
when a path does not work (wrong md5, no ping replies).

Results and timings: $XVIF_CACHE/xen-runs/<run>/netbench.json, timings.json.
"""
import json
import os
import re
import shlex
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "xen"))
os.environ.setdefault("XVIF_ELF", os.path.join(REPO, "target", "x86_64-unknown-none", "release", "xvif"))

from conftest import guest_files  # noqa: E402
from guests import Guest, domid, last_line, start_xvif, start_xvif_hvm, wait_until, xl_create  # noqa: E402
from xenvm import XenVM  # noqa: E402

MB = int(sys.argv[1]) if len(sys.argv) > 1 else 50
REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
PINGS = int(sys.argv[3]) if len(sys.argv) > 3 else 50
DD_IP = "10.0.1.1"
A_IP, B_IP = "10.0.1.2", "10.0.1.3"
NBYTES = MB * 1024 * 1024
PORT = 5000


def log(msg):
    print("[xen_netbench] %s" % msg, file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run(g, cmd, timeout=180):
    """Guest.run without `cat` of the whole guest console: only the lines
    between this command's markers come back (a guest console holding a
    panic must not reach dom0's serial line: xenvm takes "Kernel panic" on the
    console for a dom0 crash)."""
    vm = g.xen
    d = g.domid
    assert d is not None, "%s is not running" % g.name
    g.n += 1
    tag = "%d%d" % (int(time.time()) % 100000, g.n)
    vm.sh("xenstore-write /local/domain/%d/data/cmd %s" % (d, shlex.quote("%s:%s" % (tag, cmd))), quiet=True)

    def result():
        rc, out = vm.sh("xenstore-read /local/domain/%d/data/result 2>/dev/null" % d, quiet=True)
        line = last_line(out)
        return line if line.startswith(tag + ":") else None
    res = wait_until("%s to run %r" % (g.name, cmd), result, timeout=timeout, interval=0.5)
    rc = int(res.split(":", 1)[1])
    _, text = vm.sh("sed -n '/XVIF-CMD-BEGIN %s/,/XVIF-CMD-END %s /p' %s" % (tag, tag, g.console), quiet=True)
    m = re.search(r"XVIF-CMD-BEGIN %s\n(.*?)XVIF-CMD-END %s rc=" % (tag, tag), text.replace("\r", ""), re.S)
    return rc, (m.group(1) if m else "")


def crashed(g):
    rc, out = g.xen.sh("grep -c -e 'Kernel panic' %s 2>/dev/null" % g.console, quiet=True)
    rc2, st = g.xen.sh("xl list %s 2>/dev/null | awk 'NR==2{print $5}'" % g.name, quiet=True)
    return last_line(out) not in ("", "0") or "c" in last_line(st)


def create_guest(g, tries=3):
    """Create and wait for the guest; under nested TCG a Linux PV guest's
    busybox /init rarely segfaults at boot (guest panic): count it, retry."""
    for attempt in range(1, tries + 1):
        try:   # Guest.create(), plus: xl itself sometimes aborts (rc 134/139)
            # after building the domain, which can leave it paused
            g.xen.sh("rm -f %s" % g.console, quiet=True)
            xl_create(g.xen, "/guests/guest-linux-pv.cfg 'name=\"%s\"' 'extra=\"console=hvc0 rdinit=/init "
                      "ip=%s/24\"' 'vif=[\"backend=%s,mac=%s\"]'" % (g.name, g.ip, g.backend, g.mac), g.name)
            rc, st = g.xen.sh("xl list %s 2>/dev/null | awk 'NR==2{print $5}'" % g.name, quiet=True)
            if "p" in last_line(st):
                log("%s left paused by xl: unpausing" % g.name)
                g.xen.timing("%s left paused by xl create, unpaused" % g.name, 0)
                g.xen.sh("xl unpause %s" % g.name)
            g.wait_up()
        except AssertionError as e:
            log("%s not up: %s" % (g.name, str(e)[:200]))
        time.sleep(3)
        if g.domid is not None and not crashed(g) and g.grep("XVIF-AGENT-UP") and g.grep("XVIF-DOMU-UP"):
            return attempt - 1
        log("%s crashed or did not come up (attempt %d), recreating" % (g.name, attempt))
        g.xen.timing("%s crashed at boot (guest panic), recreated" % g.name, 0)
        g.destroy()
    raise AssertionError("%s crashed at boot %d times" % (g.name, tries))


# Each path's driver domain: the domain's name (the guests' backend=).
DOMAIN = {"xvif": "xvif", "xvif-hvm": "xvif", "linuxdd": "linuxdd"}
NAMES = {"xvif": "xvif (PVH, 64 MiB)", "xvif-hvm": "xvif (HVM container, 64 MiB)",
         "linuxdd": "Linux netback+bridge (PV, 256 MiB)"}


def start_dd(vm, path):
    t0 = time.time()
    if path == "xvif":
        start_xvif(vm, DD_IP)
    elif path == "xvif-hvm":
        start_xvif_hvm(vm, "ip=%s/24" % DD_IP, ("vif=[]",))
    else:
        con = "/var/log/xen/console/guest-linuxdd.log"
        vm.sh("rm -f %s" % con, quiet=True)
        xl_create(vm, "/guests/linux-dd.cfg 'extra=\"console=hvc0 rdinit=/init ip=%s/24\"'" % DD_IP, "linuxdd")
        wait_until("linuxdd devd up", lambda: vm.sh("grep -c XVIF-NETDD-DEVD-UP %s" % con, quiet=True)[0] == 0,
                   timeout=240, interval=2)
    vm.timing("%s: driver domain created and ready" % path, time.time() - t0)


def backend_states(vm, dd, guests):
    d = domid(vm, dd)
    out = []
    for g in guests:
        rc, o = vm.sh("xenstore-read /local/domain/%d/backend/vif/%d/0/state" % (d, g.domid), quiet=True)
        out.append(last_line(o))
    return out


def transfer(vm, path, a, b, i):
    global PORT
    PORT += 1
    port = PORT
    rc, out = run(b, "rm -f /tmp/rx; sleep 600 | nc -l -p %d > /tmp/rx 2>/dev/null &" % port)
    assert rc == 0, out
    wait_until("guestb listening on %d" % port,
               lambda: ":%d " % port in run(b, "netstat -ltn")[1], timeout=60, interval=1)
    t0 = time.time()
    rc, out = run(a, "s=$(cut -d' ' -f1 /proc/uptime); nc -w 30 %s %d < /tmp/tx; r=$?; "
                    "e=$(cut -d' ' -f1 /proc/uptime); echo XFER $s $e $r" % (B_IP, port), timeout=900)
    wall = time.time() - t0
    m = re.search(r"XFER ([0-9.]+) ([0-9.]+) (\d+)", out)
    assert m and m.group(3) == "0", "%s: nc failed: %s" % (path, out)
    secs = float(m.group(2)) - float(m.group(1))

    def received():
        rc, o = run(b, "ls -l /tmp/rx | awk '{print $5}'; md5sum /tmp/rx")
        return o if str(NBYTES) in o else None
    o = wait_until("%d MB at guestb" % MB, received, timeout=120, interval=2)
    md5 = o.split()[-2] if len(o.split()) >= 2 else ""
    run(b, "rm -f /tmp/rx")
    mbit = NBYTES * 8 / secs / 1e6
    vm.timing("%s: %d MB TCP guesta->guestb #%d (in guest %.2fs)" % (path, MB, i + 1, secs), wall)
    log("%s transfer %d: %.2f s in guesta (%.1f s via the agent), %.1f Mbit/s, md5 %s"
        % (path, i + 1, secs, wall, mbit, md5))
    return secs, mbit, md5


def ping(vm, path, a, i):
    t0 = time.time()
    rc, out = run(a, "ping -c %d -i 0.2 -W 2 -q %s" % (PINGS, B_IP), timeout=PINGS + 120)
    m = re.search(r"(\d+) packets transmitted, (\d+) packets received", out)
    assert m, "%s: no ping summary: %s" % (path, out)
    sent, got = int(m.group(1)), int(m.group(2))
    m = re.search(r"min/avg/max = ([0-9.]+)/([0-9.]+)/([0-9.]+)", out)
    assert m and got > 0, "%s: no ping replies: %s" % (path, out)
    vm.timing("%s: ping -c %d guesta->guestb #%d" % (path, PINGS, i + 1), time.time() - t0)
    log("%s ping %d: %d/%d, min/avg/max %s/%s/%s ms" % (path, i + 1, got, sent, *m.groups()))
    return float(m.group(2)), float(m.group(1)), float(m.group(3)), sent - got


def xvif_exits(vm):
    """xvif's published VM-exit counts and frames taken in (data/xvif-exits,
    refreshed every 2 s)."""
    d = domid(vm, "xvif")
    rc, out = vm.sh("xenstore-read /local/domain/%d/data/xvif-exits 2>/dev/null" % d, quiet=True)
    return {k: int(v) for k, v in (kv.split("=", 1) for kv in last_line(out).split() if "=" in kv)
            if v.isdigit()} if rc == 0 else {}


def exits_per_frame(e0, e1):
    """Growth of each exit count per frame taken in between two readings."""
    frames = e1.get("frames", 0) - e0.get("frames", 0)
    if frames <= 0:
        return {}
    return {k: round((e1[k] - e0.get(k, 0)) / frames, 3) for k in e1 if k != "frames"} | {"frames": frames}


def bench_path(vm, path):
    res = {"path": path, "ok": False}
    t_path = time.time()
    dom = DOMAIN[path]
    is_xvif = dom == "xvif"
    start_dd(vm, path)
    a = Guest(vm, "guesta", A_IP, "00:16:3e:00:00:0a", backend=dom)
    b = Guest(vm, "guestb", B_IP, "00:16:3e:00:00:0b", backend=dom)
    try:
        t0 = time.time()
        res["guest_boot_crashes"] = create_guest(a) + create_guest(b)
        vm.timing("%s: two guests created and up" % path, time.time() - t0)
        t0 = time.time()
        wait_until("%s: guesta reaches guestb" % path,
                   lambda: run(a, "ping -c 1 -W 2 %s" % B_IP)[0] == 0, timeout=120, interval=1)
        vm.timing("%s: first ping guesta->guestb answered" % path, time.time() - t0)
        res["backend_states"] = backend_states(vm, dom, (a, b))
        rc, out = run(a, "dd if=/dev/urandom of=/tmp/tx bs=1M count=%d 2>/dev/null && md5sum /tmp/tx" % MB,
                        timeout=600)
        assert rc == 0, out
        want = out.split()[0]
        res["failed_attempts"] = []
        if is_xvif:
            # Exits while nothing is sent: the idle loop's own wake-ups.
            time.sleep(3)
            i0, t_i = xvif_exits(vm), time.time()
            time.sleep(10)
            i1 = xvif_exits(vm)
            res["idle_exits_per_s"] = round((i1.get("total", 0) - i0.get("total", 0)) / (time.time() - t_i), 1)
            e0 = i1

        def retried(fn, *args):
            # a failed attempt (e.g. a busybox segfault in a guest) is
            # recorded and retried; guests that panicked end the path
            for k in range(3):
                try:
                    return fn(*args)
                except AssertionError as e:
                    res["failed_attempts"].append(str(e)[:300])
                    log("%s: attempt failed: %s" % (path, str(e)[:300]))
                    if crashed(a) or crashed(b) or k == 2:
                        raise
        xfers = [retried(transfer, vm, path, a, b, i) for i in range(REPS)]
        bad = [x[2] for x in xfers if x[2] != want]
        assert not bad, "%s: md5 mismatch at guestb: sent %s, got %s" % (path, want, bad)
        if is_xvif:
            time.sleep(3)
            e1 = xvif_exits(vm)
            res["exits_per_frame_transfer"] = exits_per_frame(e0, e1)
        pings = [retried(ping, vm, path, a, i) for i in range(REPS)]
        if is_xvif:
            time.sleep(3)
            res["exits_per_frame_ping"] = exits_per_frame(e1, xvif_exits(vm))
        res.update(ok=True, secs=[round(x[0], 2) for x in xfers], mbit=[round(x[1], 1) for x in xfers],
                   mbit_median=statistics.median(x[1] for x in xfers),
                   rtt_avg=[p[0] for p in pings], rtt_min=min(p[1] for p in pings),
                   rtt_max=max(p[2] for p in pings), ping_lost=sum(p[3] for p in pings),
                   rtt_median=statistics.median(p[0] for p in pings), md5=want)
    except Exception as e:
        res["error"] = str(e)[-1500:]
        log("%s FAILED: %s" % (path, e))
        vm.print_diagnostics("%s path failed" % path, force=True)
    finally:
        try:
            res["guest_user_faults"] = {g.name: g.faults() for g in (a, b)}
        except Exception:
            pass
        t0 = time.time()
        for g in (a, b):
            try:
                g.destroy()
            except Exception as e:
                log("destroy %s: %s" % (g.name, e))
        vm.sh("xl destroy %s" % dom, timeout=120)
        vm.timing("%s: guests + driver domain destroyed" % path, time.time() - t0)
        vm.timing("%s: whole path" % path, time.time() - t_path)
    return res


def main():
    cmd = "XVIF_ELF=%s python3 tests/bench/xen_netbench.py %d %d %d" % (os.environ["XVIF_ELF"], MB, REPS, PINGS)
    load0 = loadavg()
    vm = XenVM(guest_files=guest_files(), echo=False,
               hard_timeout=int(os.environ.get("XVIF_XEN_HARD_TIMEOUT", 2700)))
    results = []
    try:
        vm.boot()
        for path in os.environ.get("XVIF_NETBENCH_PATHS", "xvif xvif-hvm linuxdd").split():
            results.append(bench_path(vm, path))
    finally:
        vm.close()
    load1 = loadavg()
    by = {r["path"]: r for r in results}
    lines = ["", "Guest-to-guest through a Xen driver domain (Xen 4.17 nested in QEMU TCG, 2 vCPUs; "
             "Linux PV guests, 1 vCPU each)",
             "%d MB busybox nc transfer x%d, ping -c %d -i 0.2 x%d; medians" % (MB, REPS, PINGS, REPS),
             "%-34s %10s %14s  %s" % ("driver domain", "Mbit/s", "RTT avg (ms)", "runs (Mbit/s | RTT avg ms)")]
    for r in results:
        if r["ok"]:
            lines.append("%-34s %10.1f %14.3f  %s | %s" % (
                NAMES[r["path"]], r["mbit_median"], r["rtt_median"],
                " ".join("%.1f" % x for x in r["mbit"]), " ".join("%.3f" % x for x in r["rtt_avg"])))
        else:
            lines.append("%-34s FAILED: %s" % (NAMES[r["path"]], r.get("error", "?").splitlines()[0][:200]))
    l = by.get("linuxdd", {})
    for k in ("xvif", "xvif-hvm"):
        r = by.get(k, {})
        if r.get("ok") and l.get("ok"):
            lines.append("%-8s throughput xvif/Linux = %.2f   RTT Linux/xvif = %.2f   (> 1: xvif better)" % (
                k, r["mbit_median"] / l["mbit_median"], l["rtt_median"] / r["rtt_median"]))
    for r in results:
        if r.get("failed_attempts") or r.get("guest_user_faults") or r.get("guest_boot_crashes"):
            lines.append("%s: guest user-space faults %s, boot crashes %s, failed+retried attempts %d" % (
                r["path"], r.get("guest_user_faults"), r.get("guest_boot_crashes"), len(r.get("failed_attempts", []))))
    for k in ("xvif", "xvif-hvm"):
        r = by.get(k, {})
        for phase in ("transfer", "ping"):
            e = r.get("exits_per_frame_%s" % phase)
            if e:
                lines.append("%s VM exits per frame taken in, %s phase (%d frames; window includes idle "
                             "wake-ups): total %.2f = %s" % (k, phase, e["frames"], e.get("total", 0), " ".join(
                                 "%s %.3f" % (n, v) for n, v in sorted(e.items()) if n not in ("total", "frames"))))
        if r.get("idle_exits_per_s") is not None:
            lines.append("%s idle: %.1f VM exits/s" % (k, r["idle_exits_per_s"]))
    lines.append("host load average before/after: %s / %s" % (load0, load1))
    lines.append("command: " + cmd)
    lines.append("log dir: %s (serial.log, timings.json, netbench.json)" % vm.log_dir)
    print("\n".join(lines), flush=True)
    with open(os.path.join(vm.log_dir, "netbench.json"), "w") as f:
        json.dump({"command": cmd, "load_before": load0, "load_after": load1, "results": results,
                   "timings": vm.timings}, f, indent=1)
    return 0 if results and all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
