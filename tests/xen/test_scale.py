"""Many vifs in little memory: xvif with the shipped memory=32 serves four
Linux PV guests with eight vifs each (32 vifs), and every one of those vifs
pings xvif's management address; then xvif with memory=16 serves one guest
with eight vifs. Receive buffers come from one shared pool and an idle vif
holds none, so the vif count is bounded by traffic, not by memory per vif.

Each guest's vifs are eth0..eth7 on one /24, each with its own address; the
guest answers ARP only on the interface that owns the address
(arp_ignore=1, arp_announce=2), so a reply that reaches the guest came
through the vif that asked. xvif's own counters (data/xvif/vifs/vif<D>_<N>)
must show traffic both ways on every vif.

Needs $XVIF_ELF (the Makefile sets it)."""
import time

import pytest

from guests import MultiVifGuest, domid, last_line, resources, start_xvif, vif_counters, wait_until, xvif_domid

XVIF_IP = "10.0.5.1"
VIFS_PER_GUEST = 8


def xenstore_stats(xen, d0):
    """xvif's xenstore client and VM-exit counters, for the log."""
    got = []
    for key in ("xvif-xenstore", "xvif-exits"):
        rc, out = xen.sh("xenstore-read /local/domain/%d/data/%s 2>/dev/null" % (d0, key), quiet=True)
        got.append("%s: %s" % (key, last_line(out) if rc == 0 else "?"))
    return "; ".join(got)


def serve(xen, memory, nguests, prefix):
    """xvif with `memory` MiB and `nguests` guests of 8 vifs; every vif pings
    xvif. Returns (guests, xvif domid)."""
    d0 = start_xvif(xen, XVIF_IP, memory=memory)
    guests = [MultiVifGuest(xen, "%s%d" % (prefix, i), i, VIFS_PER_GUEST) for i in range(nguests)]
    t0 = time.time()
    for g in guests:
        if domid(xen, g.name) is not None:
            xen.sh("xl destroy %s" % g.name, timeout=120)
        try:
            g.create()
        finally:
            xen.note("SCALE after %s: xenstore %s" % (g.name, xenstore_stats(xen, d0)))
    n = nguests * VIFS_PER_GUEST
    wait_until("xvif to report %d vifs" % n, lambda: resources(xen, d0).get("vifs") == str(n), timeout=120)
    xen.timing("%d guests with %d vifs each connected to xvif (memory=%d)" % (nguests, VIFS_PER_GUEST, memory),
               time.time() - t0)
    return guests, d0


def check_every_vif(xen, guests, d0):
    for g in guests:
        got, out = g.ping_each_vif(XVIF_IP)
        bad = {k: v for k, v in got.items() if v < 3}
        assert len(got) == g.nvifs and not bad, "%s: replies per vif %s\n%s" % (g.name, got, out)
    assert xvif_domid(xen) == d0, "xvif restarted"

    def all_counted():
        seen = {}
        for g in guests:
            for k, c in vif_counters(xen, d0, g).items():
                seen["%s/eth%d" % (g.name, k)] = (int(c.get("from_guest", 0)), int(c.get("to_guest", 0)))
        return seen if all(a >= 3 and b >= 3 for a, b in seen.values()) else None
    # Counters are published every 2 s.
    seen = wait_until("xvif's counters to show every vif's pings", all_counted, timeout=60)
    res = resources(xen, d0)
    xen.note("SCALE %d vifs: resources %s" % (len(seen), " ".join("%s=%s" % kv for kv in sorted(res.items()))))
    assert res.get("rx_bufs_refused") == "0", res
    return res


@pytest.fixture(scope="module")
def cleanup(xen):
    yield
    for name in ["scale%d" % i for i in range(4)] + ["small0"]:
        if domid(xen, name) is not None:
            xen.sh("xl destroy %s" % name, timeout=120)
    if domid(xen, "xvif") is not None:
        xen.sh("xl destroy xvif", timeout=120)


@pytest.mark.parametrize("memory,nguests,prefix", [(32, 4, "scale"), (16, 1, "small")],
                         ids=["32-vifs-in-memory-32", "8-vifs-in-memory-16"])
def test_every_vif_pings_xvif(xen, cleanup, memory, nguests, prefix):
    guests, d0 = serve(xen, memory, nguests, prefix)
    res = check_every_vif(xen, guests, d0)
    assert res.get("vifs") == str(nguests * VIFS_PER_GUEST), res
    for g in guests:
        g.destroy()
    wait_until("xvif to release the vifs", lambda: resources(xen, d0).get("vifs") == "0", timeout=120)
    res = resources(xen, d0)
    # Held for the data plane's life: 16 TX staging buffers and the turn's
    # header arena (one copy between vifs).
    assert res.get("bufs") == "17", "only the 16 TX staging buffers and the header arena stay out: %s" % res
