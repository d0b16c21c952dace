"""A hostile netfront against xvif on a real Xen 4.17 nested in QEMU TCG.

Guest `hostile` boots without xen-netfront (`xvif_hostile=1`) and runs
tests/xen/hostile/hostile-netfront, which plays the frontend itself through
/dev/xen/gntalloc, /dev/xen/evtchn and /dev/xen/xenbus and misbehaves on
command (XSA-39, -155, -332, -349, -361/362/367, -432, -448 classes), and
drives the control ring (feature-ctrl-ring: Toeplitz, key, hash types,
mapping table, bad requests, req_prod far ahead).
Guest `bystander` (stock netfront) pings xvif all through every case: its
loss must stay <= 1 % and its RTT is reported against a baseline measured
before. Each case also checks that the hostile vif was disabled or its
packets dropped and counted (xvif's data/xvif/vifs/vif<D>_0 counters and its
log), that xvif kept its domid and did not crash, and that once the hostile
frontend has closed, data/xvif-resources is back at the baseline taken
before the hostile guest existed. The numbers of every case are written to
harness.log and hostile-results.txt in the run's log dir and printed at the
end of the module.

Part of `make test` (about 15 minutes); `make xen-hostile` runs it alone.

Needs $XVIF_ELF (the Makefile sets it)."""
import os
import re
import time

import pytest

from guests import (XVIF_CONSOLE, Guest, domid, last_line, last_number, record_console_crashes, start_xvif,
                    wait_until, xl_create)

XVIF_IP = "10.0.3.1"
HOSTILE_IP = "10.0.3.9"     # the sender address of its ARP requests
HOSTILE_MAC = "00:16:3e:00:03:09"
RELEASE = "/tmp/h.release"
STOP = "/tmp/h.stop"
PING_TAIL = 25              # packets younger than this (5 s) at the stop are not judged
RESULTS = []

class HostileGuest(Guest):
    """A Linux PV guest with a vif on xvif but no netfront: hostile-netfront
    plays the frontend."""

    def create(self):
        record_console_crashes(self.xen, self.name)
        self.xen.sh("rm -f %s; : > /var/log/xen/xl-%s.log" % (self.console, self.name), quiet=True)
        xl_create(self.xen, "/guests/guest-linux-pv.cfg 'name=\"%s\"' 'extra=\"console=hvc0 rdinit=/init xvif_hostile=1\"' "
                            "'vif=[\"backend=xvif,mac=%s\"]'" % (self.name, self.mac), self.name)
        self.wait_up()

    def wait_up(self, timeout=240, marker="XVIF-DOMU-HOSTILE"):
        super().wait_up(timeout=timeout, marker=marker)
        rc, out = self.xen.sh("grep -a XVIF-DOMU-HOSTILE %s | tail -n 1" % self.console, quiet=True)
        assert "gntalloc=yes evtchn=yes xenbus=yes" in out, out


def kv(text):
    return dict(x.split("=", 1) for x in text.split() if "=" in x)


def xenstore_kv(xen, path):
    rc, out = xen.sh("xenstore-read %s 2>/dev/null" % path, quiet=True)
    return kv(last_line(out)) if rc == 0 else {}


def resources(xen):
    return xenstore_kv(xen, "/local/domain/%d/data/xvif-resources" % xen.hx_domid)


def vif_counters(xen, guest_domid):
    return xenstore_kv(xen, "/local/domain/%d/data/xvif/vifs/vif%d_0" % (xen.hx_domid, guest_domid))


def settled(xen, vifs="1"):
    return wait_until("xvif's resources with %s vif(s)" % vifs,
                      lambda: (lambda r: r if r.get("vifs") == vifs else None)(resources(xen)), timeout=60)


def assert_resources_at_baseline(env, what, peak=2):
    xen = env.xen
    # two publish periods, so the figures are those after the release
    time.sleep(4.5)
    now = settled(xen)
    for k in ("vifs", "grants", "evtchns", "bufs", "unmap_failed"):
        assert now.get(k) == env.base.get(k), "%s: %s leaked: baseline %s, now %s" % (what, k, env.base, now)
    # The buffer pool keeps the 64 KiB runs of every vif it ever served at
    # once (dataplane/host.rs: the frame allocator cannot rebuild them), so
    # `frames` rises only in a case that has more vifs connected at once
    # than any before (`peak`), and must stay exactly there otherwise.
    if peak > env.peak:
        RESULTS.append("frames: %s with at most %d vif(s) at once, %s after %s (%d at once; pool high-water mark)" % (
            env.frames_hw, env.peak, now["frames"], what, peak))
        env.peak, env.frames_hw = peak, now["frames"]
    assert now["frames"] == env.frames_hw, "%s: frames leaked: %s is the pool's high-water mark, now %s" % (
        what, env.frames_hw, now)
    assert int(now["heap"]) <= int(env.base["heap"]) + 64 * 1024, "%s: heap grew: %s -> %s" % (what, env.base, now)
    return now


def assert_xvif_alive(xen):
    d = domid(xen, "xvif")
    assert d == xen.hx_domid, "xvif's domid changed from %s to %s (it died); xl dmesg tail:\n%s" % (
        xen.hx_domid, d, xen.sh("xl dmesg | tail -n 20", quiet=True)[1])
    rc, out = xen.sh("xl list xvif | tail -n 1", quiet=True)
    state = last_line(out).split()[4] if len(last_line(out).split()) > 4 else ""
    assert "c" not in state, "xvif crashed: %s" % out


def console_mark(xen):
    """How many lines xvif's console log holds now."""
    rc, out = xen.sh("wc -l < %s" % XVIF_CONSOLE, quiet=True)
    count = last_number(out)
    assert rc == 0 and count is not None, "cannot count xvif's console lines: %s" % out
    return count


def disabled_since(xen, mark, guest_domid):
    """xvif's "had been disabled" lines for the guest's vif printed after
    console line `mark`."""
    rc, out = xen.sh("tail -n +%d %s | grep -a 'vif%d.0 had been disabled'" % (mark + 1, XVIF_CONSOLE, guest_domid),
                     quiet=True)
    return [l.strip() for l in out.splitlines() if "vif%d.0 had been disabled" % guest_domid in l]


def hostile_domid(env):
    hd = env.h.domid
    assert hd is not None, "the hostile guest is not running"
    return hd


# ---------------------------------------------------------------- bystander ping
PINGSTAT = ("awk -v tail=%d '/packets transmitted/{tx=$1} / seq=/{s=\"\";t=\"\";"
            "for(i=1;i<=NF;i++){if($i~/^seq=/)s=substr($i,5);if($i~/^time=/)t=substr($i,6)+0}"
            "if(s!=\"\"&&!(s in got)){got[s]=1;n++;sum+=t;if(t>mx)mx=t}}"
            "END{w=tx-tail;if(w<0)w=0;lost=0;for(i=0;i<w;i++)if(!((i \"\") in got))lost++;"
            "printf \"PINGSTAT tx=%%d rx=%%d window=%%d lost=%%d avg=%%.2f max=%%.2f\\n\",tx,n,w,lost,(n?sum/n:0),mx}'")


def ping_start(g, tag):
    rc, out = g.run("ping -i 0.2 %s > /tmp/ping.%s 2>&1 & echo $! > /tmp/ping.%s.pid" % (XVIF_IP, tag, tag))
    assert rc == 0, out
    return time.time()


def ping_stop(g, tag):
    """Stops the ping and judges every packet sent more than 5 s before."""
    time.sleep(PING_TAIL * 0.2)
    rc, out = g.run("kill -INT $(cat /tmp/ping.%s.pid); sleep 1; %s /tmp/ping.%s" % (tag, PINGSTAT % PING_TAIL, tag))
    m = re.search(r"PINGSTAT tx=(\d+) rx=(\d+) window=(\d+) lost=(\d+) avg=([\d.]+) max=([\d.]+)", out)
    assert m, "no ping statistics from %s: %s" % (g.name, out)
    tx, rx, window, lost = (int(m.group(i)) for i in range(1, 5))
    return {"tx": tx, "rx": rx, "window": window, "lost": lost, "avg": float(m.group(5)), "max": float(m.group(6))}


def record(env, case, ping, **facts):
    b = env.baseline
    line = ("%-22s bystander: %d/%d lost (%.2f %%), rtt avg %.2f ms max %.1f ms (baseline avg %.2f max %.1f)  %s" % (
        case, ping["lost"], ping["window"], 100.0 * ping["lost"] / max(ping["window"], 1), ping["avg"], ping["max"],
        b["avg"], b["max"], " ".join("%s=%s" % kv_ for kv_ in facts.items())))
    RESULTS.append(line)
    env.xen.note("HOSTILE-RESULT " + line)
    try:
        with open(os.path.join(env.xen.log_dir, "hostile-results.txt"), "a") as f:
            f.write(line + "\n")
    except OSError:
        pass
    env.xen.timing("hostile %s: bystander avg RTT (s)" % case, ping["avg"] / 1000.0)


def assert_contained(env, ping, case):
    assert ping["window"] >= 20, "%s: too few pings to judge: %s" % (case, ping)
    assert ping["lost"] * 100 <= ping["window"], "%s: the bystander lost %d of %d pings to xvif (> 1 %%): %s" % (
        case, ping["lost"], ping["window"], ping)
    assert_xvif_alive(env.xen)


# ---------------------------------------------------------------- the program
def program(env, mode, args="", hold_timeout=180):
    """Starts hostile-netfront MODE in the hostile guest; returns its output
    once it holds (the vif as it left it, counters published)."""
    h = env.h
    rc, out = h.run("rm -f %s %s /tmp/h.%s; (hostile-netfront -s %s -t %s -r %s -x %s %s %s; echo HOSTILE-EXIT rc=$?) "
                    "> /tmp/h.%s 2>&1 &" % (RELEASE, STOP, mode, HOSTILE_IP, XVIF_IP, RELEASE, STOP, args, mode, mode))
    assert rc == 0, out
    return wait_output(env, mode, "HOSTILE-HOLD", hold_timeout)


def wait_output(env, mode, marker, timeout):
    def seen():
        rc, out = env.h.run("cat /tmp/h.%s" % mode)
        if "HOSTILE-ERROR" in out or ("HOSTILE-EXIT" in out and marker not in out):
            raise AssertionError("hostile-netfront %s failed:\n%s" % (mode, out))
        return out if marker in out else None
    return wait_until("hostile-netfront %s: %s" % (mode, marker), seen, timeout=timeout, interval=2)


def release(env, mode):
    """Lets the program close its frontend; returns its whole output."""
    rc, out = env.h.run("touch %s" % RELEASE)
    out = wait_output(env, mode, "HOSTILE-EXIT", 90)
    assert "HOSTILE-EXIT rc=0" in out and "HOSTILE-CLOSED backend_state=6" in out, out
    return out


def result(out, mode, **match):
    """The RESULT line of `mode` whose fields include `match`."""
    for line in out.splitlines():
        if line.startswith("RESULT mode=%s " % mode) or line == "RESULT mode=%s" % mode:
            f = kv(line.replace('"', ""))
            if all(f.get(k) == str(v) for k, v in match.items()):
                return f
    raise AssertionError("no RESULT mode=%s %s in:\n%s" % (mode, match, out))


def counters_now(env, hd):
    time.sleep(4.5)   # two publish periods
    c = vif_counters(env.xen, hd)
    assert c, "xvif publishes no counters for the hostile vif (not connected?)"
    return c


def run_case(env, mode, args="", check=None):
    """One case: bystander pinging throughout, the program until it holds,
    `check(out, counters)` on the held vif, release, then containment and
    resources. Returns (output, counters, ping)."""
    xen = env.xen
    hd = hostile_domid(env)
    mark = console_mark(xen)
    ping_start(env.by, mode)
    out = program(env, mode, args)
    assert "RESULT first_probe=failed" not in out, "the connection did not work before misbehaving:\n" + out
    c = counters_now(env, hd)
    out = release(env, mode)
    ping = ping_stop(env.by, mode)
    new_disabled = disabled_since(xen, mark, hd)
    failed = None
    try:
        facts = check(out, c, new_disabled) if check else {}
    except AssertionError as e:     # recorded with the numbers, then raised
        failed, facts = e, {"FAILED": str(e).splitlines()[0][:100] if str(e) else "assert"}
    record(env, mode, ping, **(facts or {}))
    if failed is not None:
        raise failed
    assert_contained(env, ping, mode)
    assert_resources_at_baseline(env, mode)
    return out, c, ping


# ---------------------------------------------------------------- fixtures
class Env:
    pass


def bring_up(xen, env):
    for name in ("bystander", "hostile", "third"):
        if domid(xen, name) is not None:
            xen.sh("xl destroy %s" % name, timeout=120)
    xen.hx_domid = start_xvif(xen, XVIF_IP)
    env.xen = xen
    env.by = Guest(xen, "bystander", "10.0.3.2", "00:16:3e:00:03:02")
    env.third = Guest(xen, "third", "10.0.3.3", "00:16:3e:00:03:03")
    env.h = HostileGuest(xen, "hostile", HOSTILE_IP, HOSTILE_MAC)
    env.by.create()
    sent, got, out = env.by.ping(XVIF_IP, count=10)
    assert got == 10, out
    env.base = settled(xen)
    env.peak, env.frames_hw = 1, env.base["frames"]
    t0 = time.time()
    env.h.create()
    xen.timing("hostile guest created (no netfront)", time.time() - t0)
    ping_start(env.by, "baseline")
    time.sleep(25)
    env.baseline = ping_stop(env.by, "baseline")
    xen.note("HOSTILE baseline: %s, resources %s" % (env.baseline, env.base))
    RESULTS.append("baseline: bystander rtt avg %.2f ms max %.1f ms, %d/%d lost; xvif resources %s" % (
        env.baseline["avg"], env.baseline["max"], env.baseline["lost"], env.baseline["window"],
        " ".join("%s=%s" % x for x in sorted(env.base.items()))))


@pytest.fixture(scope="module")
def env(xen, request):
    RESULTS.clear()
    e = Env()
    bring_up(xen, e)
    yield e
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line("")
        tr.write_line("hostile netfront, per case (bystander loss and RTT against its baseline):")
        for line in RESULTS:
            tr.write_line("  " + line)
    for g in (e.h, e.by, e.third):
        g.destroy()
    xen.sh("xl destroy xvif", timeout=120)


@pytest.fixture(autouse=True)
def healthy(env):
    """Each test starts from the module's xvif (or a new one, with new
    guests and baselines, if it died: the test that saw it failed), both
    guests running, no hostile-netfront left running and the third guest
    gone."""
    xen = env.xen
    if domid(xen, "xvif") != xen.hx_domid:
        for g in (env.h, env.by, env.third):
            g.destroy()
        bring_up(xen, env)
    env.third.destroy()
    env.by.ensure()
    if env.h.domid is None:
        env.h.create()
    rc, out = env.h.run("pidof hostile-netfront || true")
    if out.strip():
        env.h.run("touch %s %s" % (RELEASE, STOP))
        wait_until("the last hostile-netfront to exit",
                   lambda: not env.h.run("pidof hostile-netfront || true")[1].strip(), timeout=90, interval=2)
    yield


# ---------------------------------------------------------------- cases
def test_good_frontend_transmits_and_receives(env):
    """The machinery: hostile-netfront's own frontend, behaving, sends ARP
    requests through xvif and gets the management stack's replies."""
    def check(out, c, dis):
        assert result(out, "good", **{"exchanges": "5/5"}), out
        assert c["disabled"] == "false" and int(c["from_guest"]) == 6 and c["from_guest_errors"] == "0", c
        assert int(c["to_guest"]) >= 6, c
        assert not dis, dis
        return {"from_guest": c["from_guest"], "to_guest": c["to_guest"]}
    run_case(env, "good", check=check)


FATAL = {
    # mode: (what xvif must log as the reason it disabled the vif, and the
    # reason it publishes in the vif's counters)
    "ahead": (r"TxRingOverflow\(", "tx_ring_overflow"),
    "backwards": (r"TxRingOverflow\(", "tx_ring_overflow"),
    "slots20": (r"TooManySlots \{ slots: 20 \}", "too_many_slots"),
    "crosspage": (r"CrossesPage \{ offset: 4000, size: 200 \}", "crosses_page"),
    # the control ring's req_prod 1000 ahead (mode ctrlahead: two queues
    # and a control ring)
    "ctrlahead": (r"CtrlRingOverflow\(", "ctrl_ring_overflow"),
}


@pytest.mark.parametrize("mode", list(FATAL))
def test_fatal_ring_abuse_disables_only_that_vif(env, mode):
    """req_prod 1000 ahead / moved back (XSA-39), a 20-slot packet, a slot
    crossing its page: the vif is disabled (published disabled=true, the
    reason logged when it closes), answers nothing more, and nothing else
    is disturbed."""
    def check(out, c, dis):
        r = result(out, mode)
        assert r["responses_after"] == "0" and r["rsp_prod_moved"] == "0", "a disabled vif still answered:\n" + out
        assert c["disabled"] == "true", "xvif did not disable the vif: %s" % c
        assert c.get("disabled_reason") == FATAL[mode][1], c
        assert len(dis) == 1 and re.search(FATAL[mode][0], dis[0]), "log lines: %s" % dis
        return {"disabled": c["disabled"], "from_guest": c["from_guest"], "reason": dis[0].split("disabled: ", 1)[-1][:70]}
    run_case(env, mode, check=check)


# hostile-netfront's ctrl mode: the requests it sends, and how many of
# them must fail (each with the status netif.h gives it).
CTRL_REQUESTS, CTRL_ERRORS = 21, 10


def test_ctrl_ring_configures_hashing_and_answers_bad_requests(env):
    """feature-ctrl-ring on the real Xen: a two-queue frontend with a control
    ring sets Toeplitz, all four hash types, the 40-byte RSS key and an
    8-entry table, reads the flags and table size back; bad requests (a bad
    and a dom0 grant for the key, a 41-byte key, a table entry naming queue
    2, a sub-table past the table, a table of 129, unknown types, unknown
    flags) each get their status and change nothing. Then the table steers
    xvif's ARP replies (hash 0: entry 0) to queue 1, then to queue 0, and
    the vif still answers with hashing off. xvif publishes what was set."""
    def check(out, c, dis):
        r = result(out, "ctrl")
        bad = [l for l in out.splitlines() if l.startswith("ctrl ") and l.endswith(" BAD")]
        assert not bad and r["checks"] == str(CTRL_REQUESTS) and r["as_expected"] == r["checks"], (
            "control requests answered wrongly: %s\n%s" % (bad, out))
        assert (r["steered_q1"], r["steered_q0"], r["probe_after"]) == ("3/3", "3/3", "1"), out
        assert c.get("ctrl") == "yes" and c.get("hash") == "toeplitz", c
        assert (c.get("hash_flags"), c.get("hash_mapping")) == ("0xf", "8"), c
        assert (c.get("ctrl_requests"), c.get("ctrl_errors")) == (str(CTRL_REQUESTS), str(CTRL_ERRORS)), c
        assert c["queues"] == "2" and c["disabled"] == "false" and not dis, (c, dis)
        return {"requests": c["ctrl_requests"], "errors": c["ctrl_errors"], "steered": "q1 3/3, q0 3/3",
                "hash": c["hash"]}
    run_case(env, "ctrl", check=check)


def test_nineteen_slots_dropped_and_counted(env):
    def check(out, c, dis):
        r = result(out, "slots19")
        assert (r["responses"], r["error"], r["probe_after"]) == ("19", "19", "1"), out
        assert c["disabled"] == "false" and c["from_guest_errors"] == "1" and c["from_guest"] == "2", c
        assert not dis, dis
        return {"from_guest_errors": c["from_guest_errors"], "from_guest": c["from_guest"]}
    run_case(env, "slots19", check=check)


def test_bad_grant_refs_are_errors_not_crashes(env):
    """TX slots with refs out of range, freed, or granted to dom0; RX
    requests with such refs and a read-only one (XSA-361/362/367 class):
    each answered with an error and counted; the vif stays up."""
    def check(out, c, dis):
        r = result(out, "badgref")
        assert (r["tx_okay"], r["tx_error"], r["probe_after"]) == ("0", "4", "1"), out
        assert int(r["rx_error"]) == 4, "4 RX requests with bad refs, RX error responses: %s\n%s" % (r["rx_error"], out)
        assert c["disabled"] == "false" and c["from_guest_errors"] == "4", c
        assert int(c["to_guest_errors"]) >= 4, c
        assert not dis, dis
        return {"from_guest_errors": c["from_guest_errors"], "to_guest_errors": c["to_guest_errors"]}
    run_case(env, "badgref", check=check)


def test_bad_ring_refs_refused_without_leaks(env):
    """tx-ring-ref out of range, a tx ring granted to dom0 instead of xvif,
    a read-only rx ring: xvif refuses each connect (state Closing, error
    node), leaks nothing (checked against the baseline after the case) and
    connects the same frontend properly afterwards."""
    def check(out, c, dis):
        facts = {}
        for v in ("tx_out_of_range", "tx_to_dom0", "rx_readonly"):
            r = result(out, "badring", variant=v)
            assert r["backend_state"] == "5" and r["error"], "variant %s: %s\n%s" % (v, r, out)
            facts[v] = "refused"
        assert result(out, "badring", probe_after=1)
        assert c["disabled"] == "false", c
        return facts
    run_case(env, "badring", check=check)


def test_zero_length_fragments(env):
    """XSA-448: empty fragments after a full first slot, an empty first
    slot, an empty fragment with a bad ref: each packet answered (accepted
    or dropped), never fatal."""
    def check(out, c, dis):
        r = result(out, "zerofrag")
        counts = {}
        for k, slots in (("empty_frags", 5), ("empty_first", 3), ("empty_badref", 3)):
            okay, err, reply = (int(x) for x in r[k].split("/"))
            assert okay + err == slots, "%s: %d slots, %d answered\n%s" % (k, slots, okay + err, out)
            counts[k] = "accepted" if err == 0 else "dropped"
        assert r["probe_after"] == "1", out
        assert c["disabled"] == "false" and not dis, (c, dis)
        return counts
    run_case(env, "zerofrag", check=check)


def test_eighteen_tiny_slots_gathered(env):
    """XSA-432: a 112-byte ARP request in 18 slots (the first only 10
    bytes, shorter than an Ethernet header) is gathered and answered."""
    def check(out, c, dis):
        r = result(out, "tiny18")
        assert (r["responses"], r["okay"], r["arp_reply"], r["probe_after"]) == ("18", "18", "1", "1"), out
        assert c["disabled"] == "false" and c["from_guest"] == "3" and c["from_guest_errors"] == "0", c
        return {"from_guest": c["from_guest"]}
    run_case(env, "tiny18", check=check)


def test_requests_rewritten_while_read(env):
    """XSA-155: each request is rewritten in a tight loop while xvif reads
    it. Phase 1 flips the size between 60 and 8 (accept / runt drop): every
    packet gets exactly one verdict and the counters agree with the
    responses. Phase 2 flips the offset between 0 and 4090 (accept / slot
    crossing its page): every packet is accepted, or the vif is disabled
    for exactly that reason."""
    def check(out, c, dis):
        p1 = result(out, "doublefetch", phase=1)
        p2 = result(out, "doublefetch", phase=2)
        assert p1["packets"] == "200" and p1["unanswered"] == "0", out
        ok = int(p1["okay"]) + int(p2["okay"])
        err = int(p1["error"]) + int(p2["error"])
        assert int(c["from_guest"]) == 1 + ok, "1 probe + %d okay responses, counted %s" % (ok, c)
        assert int(c["from_guest_errors"]) == err, "%d error responses, counted %s" % (err, c)
        if p2["unanswered"] == "1":
            assert c["disabled"] == "true", c
            assert len(dis) == 1 and "CrossesPage { offset: 4090, size: 60 }" in dis[0], dis
            verdict = "disabled after %s packets" % p2["packets"]
        else:
            assert p2["packets"] == "200" and p2["okay"] == "200" and c["disabled"] == "false" and not dis, (out, c, dis)
            verdict = "all accepted"
        return {"phase1": "%s okay/%s error" % (p1["okay"], p1["error"]), "phase2": verdict,
                "flips": p1["flips"] + "+" + p2["flips"]}
    run_case(env, "doublefetch", check=check)


def lsevtchn_to(xen, guest_domid):
    """xvif's local ports bound to `guest_domid`."""
    rc, out = xen.sh("lsevtchn %d" % xen.hx_domid, quiet=True)
    ports = []
    for line in out.splitlines():
        m = re.match(r"\s*(\d+): .*Interdomain \(Connected\) - Remote Domain (\d+), Port (\d+)", line)
        if m and int(m.group(2)) == guest_domid:
            ports.append(int(m.group(1)))
    return ports, out


def test_event_channel_storm_then_rebind(env):
    """XSA-332: notifications as fast as the guest can send them for 20 s;
    then the frontend closes, unbinds and connects again with a new port;
    the new vif (on xvif's side most likely the same, reused port) still
    transmits and receives."""
    xen, h = env.xen, env.h
    hd = hostile_domid(env)
    mark = console_mark(xen)
    ping_start(env.by, "storm")
    rc, out = h.run("rm -f %s /tmp/h.storm; (hostile-netfront -s %s -t %s -r %s -d 20 storm; echo HOSTILE-EXIT rc=$?) "
                    "> /tmp/h.storm 2>&1 &" % (RELEASE, HOSTILE_IP, XVIF_IP, RELEASE))
    wait_output(env, "storm", "first_probe", 120)
    old_ports, raw_old = lsevtchn_to(xen, hd)
    out = wait_output(env, "storm", "HOSTILE-HOLD", 240)
    new_ports, raw_new = lsevtchn_to(xen, hd)
    c = counters_now(env, hd)
    out = release(env, "storm")
    ping = ping_stop(env.by, "storm")
    r = result(out, "storm")
    reused = bool(old_ports) and old_ports == new_ports
    record(env, "storm", ping, notifies=r["notifies"], rate=r["rate"], xvif_ports="%s->%s" % (old_ports, new_ports),
           reused=reused, probe_after_storm=r["probe_after_storm"], probe_after_rebind=r["probe_after_rebind"],
           evtchn_throttled=c.get("evtchn_throttled"))
    assert r["probe_after_storm"] == "1", "the storming vif stopped transmitting:\n" + out
    assert r["closed_state"] == "6", out
    assert r["probe_after_rebind"] == "1", ("the vif connected again (xvif ports %s -> %s) does not transmit:\n%s\n"
                                            "lsevtchn:\n%s" % (old_ports, new_ports, out, raw_new))
    assert c["disabled"] == "false" and int(c["from_guest"]) >= 1, c
    assert disabled_since(xen, mark, hd) == []
    assert old_ports and new_ports, "no xvif port bound to the hostile guest seen:\n%s\n%s" % (raw_old, raw_new)
    assert_contained(env, ping, "storm")
    assert_resources_at_baseline(env, "storm")


def third_guest_connects_meanwhile(env, mode):
    """Runs `mode` until STOP while the third guest is created; the third
    guest must connect and ping xvif. Returns (output, creation seconds)."""
    xen = env.xen
    hd = hostile_domid(env)
    ping_start(env.by, mode)
    rc, out = env.h.run("rm -f %s %s /tmp/h.%s; (hostile-netfront -s %s -t %s -r %s -x %s -d 600 %s; "
                        "echo HOSTILE-EXIT rc=$?) > /tmp/h.%s 2>&1 &"
                        % (RELEASE, STOP, mode, HOSTILE_IP, XVIF_IP, RELEASE, STOP, mode, mode))
    wait_output(env, mode, "first_probe", 120)
    time.sleep(5)
    t0 = time.time()
    try:
        env.third.create()
        secs = time.time() - t0
        sent, got, pout = env.third.ping(XVIF_IP, count=10)
        d = xvif_be_state(xen, env.third.domid)
    finally:
        env.h.run("touch %s" % STOP)
    out = wait_output(env, mode, "HOSTILE-HOLD", 240)
    c = counters_now(env, hd)
    out = release(env, mode)
    ping = ping_stop(env.by, mode)
    env.third.destroy()
    return out, c, ping, secs, got, pout, d


def xvif_be_state(xen, guest_domid):
    rc, out = xen.sh("xenstore-read /local/domain/%d/backend/vif/%d/0/state" % (xen.hx_domid, guest_domid), quiet=True)
    return last_line(out)


def test_state_flapping_while_a_third_guest_connects(env):
    """XSA-349 class, control plane: the hostile frontend writes its state
    Closing/Initialising/Connected as fast as it can while a third guest
    is created; the third guest connects and pings xvif, the bystander
    keeps <= 1 % loss, and the hostile frontend connects cleanly after."""
    out, c, ping, secs, got, pout, st = third_guest_connects_meanwhile(env, "flap")
    r = result(out, "flap")
    record(env, "flap", ping, state_writes=r["writes"], rate=r["rate"], third_created_s="%.0f" % secs,
           third_ping="%d/10" % got, probe_after=r["probe_after"])
    assert got == 10 and st == "4", "third guest: ping %d/10, backend state %s\n%s" % (got, st, pout)
    assert int(r["writes"]) > 0 and r["probe_after"] == "1", out
    assert c["disabled"] == "false", c
    assert_contained(env, ping, "flap")
    wait_until("the third guest's vif gone", lambda: resources(env.xen).get("vifs") == "1", timeout=60)
    assert_resources_at_baseline(env, "flap", peak=3)


def test_hundreds_of_nodes_under_state_while_a_third_guest_connects(env):
    """XSA-349 class, watch events: the hostile frontend creates 400 nodes
    under its own `state` node and removes them, over and over, while a
    third guest is created; the third guest still connects."""
    out, c, ping, secs, got, pout, st = third_guest_connects_meanwhile(env, "nodes")
    r = result(out, "nodes")
    record(env, "nodes", ping, rounds=r["rounds"], created=r["created"], failed=r["failed"],
           third_created_s="%.0f" % secs, third_ping="%d/10" % got, probe_after=r["probe_after"])
    assert got == 10 and st == "4", "third guest: ping %d/10, backend state %s\n%s" % (got, st, pout)
    assert int(r["created"]) >= 400 and r["backend_state"] == "4" and r["probe_after"] == "1", out
    assert c["disabled"] == "false", c
    assert_contained(env, ping, "nodes")
    wait_until("the third guest's vif gone", lambda: resources(env.xen).get("vifs") == "1", timeout=60)
    assert_resources_at_baseline(env, "nodes", peak=3)


def test_destroyed_hostile_guest_returns_resources_to_baseline(env):
    """After all of it the hostile guest is destroyed (its frontend left
    connected): its backend directory goes and xvif's grants, event
    channels, buffers, heap and frames return to the baseline taken before
    the hostile guest existed."""
    xen, h = env.xen, env.h
    hd = hostile_domid(env)
    mark = console_mark(xen)
    ping_start(env.by, "destroy")
    program(env, "good")
    settled(xen, "2")     # the hostile vif is connected when its guest goes
    xen.sh("xl destroy %s" % h.name, timeout=120)
    wait_until("the hostile guest's backend directory removed",
               lambda: xen.sh("xenstore-exists /local/domain/%d/backend/vif/%d" % (xen.hx_domid, hd), quiet=True)[0] != 0,
               timeout=60)
    ping = ping_stop(env.by, "destroy")
    now = assert_resources_at_baseline(env, "destroy")
    record(env, "destroy", ping, resources=" ".join("%s=%s" % x for x in sorted(now.items())))
    assert_contained(env, ping, "destroy")
    assert disabled_since(xen, mark, hd) == []
