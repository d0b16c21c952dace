"""xvif as a PVH network driver domain serving two Linux PV guests
(Debian kernel, stock xen-netfront) on a real Xen 4.17 nested in QEMU.

Needs $XVIF_ELF (the Makefile sets it)."""
import re
import time

import pytest

from guests import XVIF_CONSOLE, Guest, domid, last_line, start_xvif, wait_until, xl_create, xvif_domid

XVIF_IP = "10.0.1.1"


def resources(xen):
    d = xvif_domid(xen)
    rc, out = xen.sh("xenstore-read /local/domain/%d/data/xvif-resources" % d, quiet=True)
    return dict(kv.split("=", 1) for kv in last_line(out).split() if "=" in kv)


def backend_dir(xen, guest_domid):
    d = xvif_domid(xen)
    rc, out = xen.sh("xenstore-ls /local/domain/%d/backend/vif/%d >/dev/null 2>&1; echo $?" % (d, guest_domid), quiet=True)
    return last_line(out) == "0"


def port_counters(xen, name):
    d = xvif_domid(xen)
    rc, out = xen.sh("xenstore-read /local/domain/%d/data/xvif/ports/%s 2>/dev/null" % (d, name), quiet=True)
    return dict(kv.split("=", 1) for kv in last_line(out).split() if "=" in kv) if rc == 0 else {}


@pytest.fixture(scope="module")
def net(xen):
    for name in ("guesta", "guestb"):
        if domid(xen, name) is not None:
            xen.sh("xl destroy %s" % name, timeout=120)
    xen.xvif_domid = start_xvif(xen, XVIF_IP)
    a = Guest(xen, "guesta", "10.0.1.2", "00:16:3e:00:00:0a")
    # Guest B's netfront asks for 2 queues (queue-N/ keys), A's for one.
    b = Guest(xen, "guestb", "10.0.1.3", "00:16:3e:00:00:0b", queues=2)
    t0 = time.time()
    a.create()
    b.create()
    xen.timing("two Linux PV guests created and connected", time.time() - t0)
    yield xen, a, b
    for g in (a, b):
        g.destroy()
    xen.sh("xl destroy xvif", timeout=120)


@pytest.fixture(autouse=True)
def healthy(net):
    """Each test starts from a running xvif (the same one, or a new one with
    new guests if it died: that failure is reported by the test that saw it)
    and both guests running with their network up."""
    xen, a, b = net
    if domid(xen, "xvif") != xen.xvif_domid:
        for g in (a, b):
            g.destroy()
        xen.xvif_domid = start_xvif(xen, XVIF_IP)
    for g in (a, b):
        g.ensure()
    yield


def test_guests_ping_xvif_and_each_other(net):
    xen, a, b = net
    for g, target in ((a, XVIF_IP), (b, XVIF_IP), (a, b.ip), (b, a.ip)):
        sent, got, out = g.ping(target, count=100)
        assert (sent, got) == (100, 100), "%s -> %s: %s" % (g.name, target, out)
    assert backend_dir(xen, a.domid) and backend_dir(xen, b.domid)
    rc, out = xen.sh("xenstore-read /local/domain/%d/backend/vif/%d/0/hotplug-status" % (xvif_domid(xen), a.domid))
    assert last_line(out) == "connected"


def vif_counters(xen, guest_domid):
    d = xvif_domid(xen)
    rc, out = xen.sh("xenstore-read /local/domain/%d/data/xvif/vifs/vif%d_0 2>/dev/null" % (d, guest_domid), quiet=True)
    return dict(kv.split("=", 1) for kv in last_line(out).split() if "=" in kv) if rc == 0 else {}


def test_multi_queue_guest_gets_its_queues(net):
    xen, a, b = net
    d = xvif_domid(xen)
    rc, out = xen.sh("xenstore-read /local/domain/%d/backend/vif/%d/0/multi-queue-max-queues" % (d, b.domid))
    assert last_line(out) == "4", out
    rc, out = xen.sh("xenstore-read /local/domain/%d/device/vif/0/multi-queue-num-queues" % b.domid)
    assert last_line(out) == "2", out
    rc, out = b.run("ls /sys/class/net/eth0/queues")
    assert "tx-1" in out and "rx-1" in out, out
    ca = wait_until("vif counters", lambda: vif_counters(xen, a.domid) or None, timeout=30)
    cb = wait_until("vif counters", lambda: vif_counters(xen, b.domid) or None, timeout=30)
    assert (ca["queues"], cb["queues"]) == ("1", "2"), (ca, cb)


def transfer_20mb(xen, a, b, port):
    # stdin must stay open: busybox nc stops when its stdin ends
    rc, _ = b.run("rm -f /tmp/rx; sleep 600 | nc -l -p %d > /tmp/rx 2>/dev/null &" % port)
    assert rc == 0
    rc, out = a.run("[ -s /tmp/tx ] || dd if=/dev/urandom of=/tmp/tx bs=1M count=20 2>/dev/null; md5sum /tmp/tx")
    assert rc == 0, out
    sent_md5 = out.split()[0]
    t0 = time.time()
    rc, out = a.run("nc -w 30 %s %d < /tmp/tx" % (b.ip, port), timeout=600)
    secs = time.time() - t0
    xen.timing("20 MB TCP guest->guest through xvif", secs)
    def received():
        rc, out = b.run("ls -l /tmp/rx | awk '{print $5}'; md5sum /tmp/rx")
        return out if "20971520" in out else None
    try:
        out = wait_until("20 MB at guestb", received, timeout=120, interval=2)
    finally:
        d = xvif_domid(xen)
        xen.sh("xenstore-ls -f /local/domain/%d/data/xvif/vifs" % d)
    assert sent_md5 in out, (sent_md5, out)


def test_tcp_transfer_between_guests_is_intact(net):
    xen, a, b = net
    transfer_20mb(xen, a, b, 5001)


def test_counters_published_and_spoofing_dropped(net):
    xen, a, b = net
    name = "vif%d_0" % a.domid
    before = port_counters(xen, name)
    assert int(before.get("rx_packets", 0)) > 0, before
    # Guest A forges its source MAC: xvif must drop and count it.
    rc, out = a.run("ip link set eth0 down && ip link set eth0 address 00:16:3e:00:00:99 && ip link set eth0 up "
                    "&& ping -c 5 -W 1 -q %s; ip link set eth0 down; ip link set eth0 address %s; ip link set eth0 up"
                    % (XVIF_IP, a.mac))
    assert "0 packets received" in out, out
    after = wait_until("spoof counter", lambda: (lambda c: c if int(c.get("spoofed", 0)) > int(before.get("spoofed", 0)) else None)(port_counters(xen, name)), timeout=30)
    assert int(after["spoofed"]) >= 5, after
    sent, got, out = a.ping(XVIF_IP, count=5, interval="0.2")
    assert got == 5, out
    # The same counters on the management stack's metrics endpoint.
    rc, out = b.run("wget -q -O - http://%s:9100/metrics | grep -e '^xvif_switch_spoofed_total' "
                    "-e '^xvif_switch_rx_packets_total'" % XVIF_IP)
    m = re.search(r'xvif_switch_spoofed_total\{port="vif%d\.0"\} (\d+)' % a.domid, out)
    assert m and int(m.group(1)) >= 5, out
    assert re.search(r'xvif_switch_rx_packets_total\{port="vif%d\.0"\} [1-9]' % b.domid, out), out


def test_guest_reboot_reconnects(net):
    xen, a, b = net
    old = a.domid
    xen.sh("rm -f %s; : > /var/log/xen/xl-%s.log" % (a.console, a.name), quiet=True)
    xen.sh("xl reboot %s" % a.name, timeout=120)

    def back():
        d = a.domid
        if d is None:
            # A build that failed says so in xl's log: fail now, with it.
            rc, out = xen.sh("grep -a -e 'build domain' -e 'xc_dom_' -e 'Invalid kernel' "
                             "-e 'create domain' /var/log/xen/xl-%s.log | tail -n 5"
                             % a.name, quiet=True)
            if out.strip():
                raise AssertionError("%s was not rebuilt after xl reboot:\n%s" % (a.name, out.strip()))
        return d not in (None, old)
    wait_until("guesta to come back with a new domid", back, timeout=180, interval=2)
    a.wait_up()
    sent, got, out = a.ping(XVIF_IP, count=20)
    assert got == 20, out
    wait_until("old backend directory removed", lambda: not backend_dir(xen, old), timeout=60)


def test_network_detach_and_attach(net):
    xen, a, b = net
    d = b.domid
    rc, out = xen.sh("xl network-detach %s 0" % b.name, timeout=120)
    assert rc == 0, out
    wait_until("backend dir of guestb removed", lambda: not backend_dir(xen, d), timeout=60)
    rc, out = xen.sh("xl network-attach %s backend=xvif mac=%s" % (b.name, b.mac), timeout=120)
    assert rc == 0, out
    # The guest's init gives a hot-plugged netfront device its address; no
    # help from the test.
    wait_until("guestb's new netfront device up with its address", lambda: b.grep("XVIF-DOMU-HOTPLUG"),
               timeout=120, interval=2)
    sent, got, out = b.ping(XVIF_IP, count=20)
    assert got >= 19, out   # the first may go to ARP while the link comes up
    sent, got, out = b.ping(a.ip, count=20)
    assert got == 20, out


def test_destroy_guest_while_other_keeps_pinging(net):
    xen, a, b = net
    d = b.domid
    rc, _ = a.run("ping -c 60 -i 0.2 -q %s > /tmp/bg 2>&1 &" % XVIF_IP)
    xen.sh("xl destroy %s" % b.name, timeout=120)
    wait_until("backend dir of destroyed guestb removed", lambda: not backend_dir(xen, d), timeout=60)
    def done():
        rc, out = a.run("cat /tmp/bg")
        return out if "packets received" in out else None
    out = wait_until("background ping", done, timeout=120, interval=2)
    m = re.search(r"(\d+) packets transmitted, (\d+) packets received", out)
    assert m and m.group(1) == m.group(2) == "60", out


CYCLES = 50


def test_attach_detach_cycles_return_to_baseline(net):
    xen, a, b = net
    base = wait_until("settled resources", lambda: (lambda r: r if r.get("vifs") == "2" else None)(resources(xen)), timeout=60)
    t0 = time.time()
    for i in range(CYCLES):
        d = b.domid
        rc, out = xen.sh("xl network-detach %s 0" % b.name, timeout=120)
        assert rc == 0, out
        wait_until("detach %d" % i, lambda: not backend_dir(xen, d), timeout=60, interval=0.5)
        rc, out = xen.sh("xl network-attach %s backend=xvif mac=%s" % (b.name, b.mac), timeout=120)
        assert rc == 0, out
        wait_until("attach %d connected" % i, lambda: (lambda r: r if r.get("vifs") == "2" else None)(resources(xen)),
                   timeout=120, interval=0.5)
    xen.timing("%d network-detach/attach cycles" % CYCLES, time.time() - t0)
    after = wait_until("settled resources", lambda: (lambda r: r if r.get("vifs") == "2" else None)(resources(xen)), timeout=60)
    for k in ("vifs", "grants", "evtchns", "bufs", "frames"):
        assert after[k] == base[k], (k, base, after)
    assert after.get("unmap_failed") == "0", after
    assert int(after["heap"]) <= int(base["heap"]) + 64 * 1024, (base, after)
    sent, got, out = a.ping(XVIF_IP, count=10)
    assert got == 10, out
