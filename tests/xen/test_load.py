"""xvif under load: four Linux PV guests (stock netfront, one queue each)
moving data at once on a real Xen 4.17 nested in QEMU TCG. xvif must keep
its domain id (no crash, no triple fault) and every byte must arrive.

Needs $XVIF_ELF (the Makefile sets it)."""
import os
import re
import time

import pytest

from guests import XVIF_CONSOLE, Guest, domid, last_line, start_xvif, wait_until

XVIF_IP = "10.0.2.1"
NAMES = ("loada", "loadb", "loadc", "loadd")
MB = 1024 * 1024


def bring_up(xen):
    """xvif from the shipped configuration, then the four guests with their
    IPv6 addresses; returns the guests and xvif's domid."""
    for name in NAMES:
        if domid(xen, name) is not None:
            xen.sh("xl destroy %s" % name, timeout=120)
    d0 = start_xvif(xen, XVIF_IP)
    guests = [Guest(xen, n, "10.0.2.%d" % (i + 2), "00:16:3e:00:02:%02x" % (i + 2), queues=1)
              for i, n in enumerate(NAMES)]
    t0 = time.time()
    for g in guests:
        g.create()
        g.ip6 = "fd00:2::%d" % (NAMES.index(g.name) + 2)
        rc, out = g.run("ip -6 addr add %s/64 dev eth0 && echo ok" % g.ip6)
        assert "ok" in out, out
    xen.timing("four Linux PV guests created and connected", time.time() - t0)
    return guests, d0


@pytest.fixture(scope="module")
def four(xen):
    """[xen, guests, xvif's domid]; `serving` renews it if xvif died."""
    state = [xen, *bring_up(xen)]
    yield state
    for g in state[1]:
        g.destroy()
    xen.sh("xl destroy xvif", timeout=120)


@pytest.fixture(autouse=True)
def serving(four):
    """Each test starts from the module's xvif, or, if that one died (the
    test that saw it failed), from a new xvif with four new guests."""
    xen, guests, d0 = four
    if domid(xen, "xvif") != d0:
        for g in guests:
            g.destroy()
        four[1:] = bring_up(xen)
    yield


def assert_xvif_alive(xen, d0):
    d = domid(xen, "xvif")
    rc, out = xen.sh("xl dmesg | grep -a -e 'Triple [f]ault' -e 'd%d.*[c]rash' | tail -n 5" % d0, quiet=True)
    assert d == d0 and "ault" not in out, "xvif lost its domain (was d%s, now %s):\n%s" % (d0, d, out)


def test_all_pairs_ping(four):
    xen, guests, d0 = four
    for g in guests:
        for h in guests:
            if g is not h:
                sent, got, out = g.ping(h.ip, count=10, interval="0.2")
                assert got == sent == 10, "%s -> %s: %s" % (g.name, h.name, out)
    a, b = guests[0], guests[1]
    rc, out = a.run("ping -6 -c 10 -i 0.2 -W 10 -q %s" % b.ip6, timeout=120)
    assert re.search(r"10 packets transmitted, 10 packets received", out), out
    assert_xvif_alive(xen, d0)


def start_transfer(src, dst, port, size_mb, addr=None):
    """Starts a listener on dst and a sender on src (both in the background);
    returns the md5 of what src sends."""
    rc, _ = dst.run("rm -f /tmp/rx%d; sleep 900 | nc -l -p %d > /tmp/rx%d 2>/dev/null &" % (port, port, port))
    assert rc == 0
    rc, out = src.run("[ -s /tmp/tx%d ] || dd if=/dev/urandom of=/tmp/tx%d bs=1M count=%d 2>/dev/null; "
                      "md5sum /tmp/tx%d" % (size_mb, size_mb, size_mb, size_mb))
    assert rc == 0, out
    md5 = out.split()[0]
    rc, _ = src.run("(nc -w 60 %s %d < /tmp/tx%d; echo rc=$? > /tmp/sent%d) >/dev/null 2>&1 &" % (
        addr or dst.ip, port, size_mb, port))
    assert rc == 0
    return md5


def wait_received(dst, port, size_mb, md5, timeout=900):
    want = size_mb * MB

    def got():
        rc, out = dst.run("stat -c %%s /tmp/rx%d" % port)
        return last_line(out).isdigit() and int(last_line(out)) >= want
    try:
        wait_until("%d MB at %s:%d" % (size_mb, dst.name, port), got, timeout=timeout, interval=5)
    finally:
        rc, out = dst.run("stat -c %%s /tmp/rx%d; md5sum /tmp/rx%d" % (port, port))
    assert md5 in out, "%s:%d received something else (sent md5 %s): %s" % (dst.name, port, md5, out)


def xvif_interrupts(xen, d0):
    """(interrupts, event upcalls) xvif has taken, from the line it logs for
    each new value of data/xvif-ping."""
    token = "count-%d" % time.time_ns()
    xen.sh("xenstore-write /local/domain/%d/data/xvif-ping %s" % (d0, token), quiet=True)
    rx = r"data/xvif-ping = '%s' \(\d+ bytes; irqs (\d+), upcalls (\d+)\)" % token

    def seen():
        rc, out = xen.sh("grep -a \"%s\" %s | tail -n 1" % (token, XVIF_CONSOLE), quiet=True)
        return re.search(rx, out)
    m = wait_until("xvif's interrupt counts", seen, timeout=60)
    return int(m.group(1)), int(m.group(2))


def test_concurrent_bidirectional_transfers(four):
    """A->B, B->A, C->D, D->C at once, 6 MB each, every md5 equal."""
    xen, guests, d0 = four
    a, b, c, d = guests
    flows = [(a, b, 5101), (b, a, 5102), (c, d, 5103), (d, c, 5104)]
    irqs0, ups0 = xvif_interrupts(xen, d0)
    t0 = time.time()
    md5s = [start_transfer(s, r, p, 6) for s, r, p in flows]
    for (s, r, p), md5 in zip(flows, md5s):
        wait_received(r, p, 6, md5)
    xen.timing("4 x 6 MB concurrent TCP through xvif", time.time() - t0)
    irqs1, ups1 = xvif_interrupts(xen, d0)
    xen.timing("xvif interrupts during the 4 x 6 MB (and the harness polling): %d, of them upcalls %d"
               % (irqs1 - irqs0, ups1 - ups0), 0)
    assert_xvif_alive(xen, d0)


def test_ipv6_transfer(four):
    """8 MB over IPv6 (ULA addresses) from A to B."""
    xen, guests, d0 = four
    a, b = guests[0], guests[1]
    md5 = start_transfer(a, b, 5201, 8, addr=b.ip6)
    wait_received(b, 5201, 8, md5)
    assert_xvif_alive(xen, d0)


# Not in `make test`: under nested emulation a ping flood (one interrupt
# injection per round trip into an otherwise idle xvif) trips QEMU's nested
# SVM triple fault in about half the runs (tests/xen/nested-repro/README.md
# shows the same fault on a trivial guest). `make xen-stress` runs it.
@pytest.mark.skipif(os.environ.get("XVIF_XEN_STRESS") != "1",
                    reason="stress only (make xen-stress): the flood trips the nested emulator's triple fault")
def test_transfer_beside_an_icmp_flood(four):
    """6 MB from A to B while C floods D with 1400-byte pings as fast as D
    answers."""
    xen, guests, d0 = four
    a, b, c, d = guests
    rc, _ = c.run("ping -A -s 1400 -w 60 -q %s > /tmp/flood 2>&1 &" % d.ip)
    assert rc == 0
    md5 = start_transfer(a, b, 5202, 6)
    wait_received(b, 5202, 6, md5)
    out = wait_until("the flood's summary", lambda: (lambda o: o if "packets received" in o else None)(
        c.run("cat /tmp/flood")[1]), timeout=180, interval=5)
    m = re.search(r"(\d+) packets transmitted, (\d+) packets received", out)
    # A flood may lose a few frames to full queues (counted by xvif); it
    # must not stall.
    assert m and int(m.group(1)) > 100 and int(m.group(2)) >= 0.95 * int(m.group(1)), out
    xen.timing("ping flood beside a transfer: %s of %s answered" % (m.group(2), m.group(1)), 0)
    assert_xvif_alive(xen, d0)


def test_xvif_still_serves_everyone(four):
    xen, guests, d0 = four
    for g in guests:
        sent, got, out = g.ping(XVIF_IP, count=10, interval="0.2")
        assert got == 10, "%s -> xvif: %s" % (g.name, out)
    # Xen's view of xvif's clock (tsc_mode and whether rdtsc exits), for the record.
    rc, out = xen.sh("xl debug-keys s; xl dmesg | grep -a -A3 'TSC' | tail -n 12", quiet=True)
    xen.note("Xen TSC info after the load:\n" + out)
    assert_xvif_alive(xen, d0)
