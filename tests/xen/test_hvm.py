"""xvif as an HVM container that owns a NIC, on a real Xen 4.17 nested in
QEMU, with Linux PV guests reaching a real peer outside Xen:

    peer (namespace, 192.168.77.1, dnsmasq) -- tap -- outer QEMU's e1000
      -- dom0 eth0 -- xenbr1 -- qemu-xen's tap -- e1000 emulated for xvif
      -- xvif's switch -- netback -- Linux PV guests (backend=xvif)

xvif boots from xen-config/xvif-hvm.cfg (type="hvm", firmware= the ELF, no
hvmloader) through xen-config/xvif-hvm-start.sh, which writes its command
line to xenstore. The session's Xen gets the outer wire because this module
is marked outer_net (conftest.py, outernet.py). Checked against the peer:
xvif's command line read from xenstore and its NIC found and up; a guest's
address by DHCP from the dnsmasq outside; 100/100 pings both ways; IPv6
link-local both ways; 20 MB of TCP each way with equal md5; xvif's
management address answers ping and serves /metrics outside, with the NIC
port's counters equal to the frames on the wire; two guests talking to each
other and to the outside at once; the outer link pulled and put back.

The NIC is chosen by the module's NIC: EMULATED here; test_hvm_pt.py runs
the same tests with PASSTHROUGH (the outer e1000 itself, given to xvif by
xen_pt, in a session booted with XVIF_XEN_IOMMU). Each module skips in the
other kind of session: with the IOMMU, dom0 builds no xenbr1.

Needs $XVIF_ELF (the Makefile sets it)."""
import hashlib
import os
import re
import threading
import time

import pytest

import outernet
import netns  # noqa: E402  (tests/, put on the path by outernet)
from guests import (QEMU_DM_LOG, XVIF_CONSOLE, Guest, domid, last_line, record_console_crashes, start_xvif_hvm,
                    wait_until, xenstore_kv, xl_create)

pytestmark = pytest.mark.outer_net

PEER = outernet.PEER_IP
XVIF_IP = outernet.SUBNET + ".2"
CMDLINE = "ip=%s/24 log=debug" % XVIF_IP
# xvif's NIC: the e1000 qemu-xen emulates on xenbr1 (xvif-hvm.cfg as it is),
# or the outer machine's e1000 passed through: no emulated NIC, no PV vif.
EMULATED = {"name": "emulated", "mac": "00:16:3e:77:00:02", "overrides": ()}
PT_BDF = "0000:00:05.0"                  # outernet.NIC_PCI_ADDR on bus 0
PASSTHROUGH = {"name": "passthrough", "mac": outernet.NIC_MAC, "bdf": PT_BDF,
               "overrides": ("vif=[]", 'pci=["%s,permissive=1"]' % PT_BDF)}
NIC = EMULATED
MB = 1024 * 1024


def eui64_link_local(mac):
    b = [int(x, 16) for x in mac.split(":")]
    b[0] ^= 2
    words = [(b[0] << 8) | b[1], (b[2] << 8) | 0xff, (0xfe << 8) | b[3], (b[4] << 8) | b[5]]
    return "fe80::" + ":".join("%x" % w for w in words)


def xvif_log(xen):
    rc, out = xen.sh("cat %s 2>/dev/null" % XVIF_CONSOLE, quiet=True)
    return out


class OutsideGuest(Guest):
    """A Linux PV guest on xvif (one queue) with a static address on the
    outside subnet, or ip="dhcp": then its address is the lease it got."""

    def __init__(self, xen, name, ip, mac):
        self.dhcp = ip == "dhcp"
        super().__init__(xen, name, None if self.dhcp else ip, mac, queues=1)

    def create(self):
        record_console_crashes(self.xen, self.name)
        self.xen.sh("rm -f %s; : > /var/log/xen/xl-%s.log" % (self.console, self.name), quiet=True)
        ip = "dhcp" if self.dhcp else self.ip + "/24"
        xl_create(self.xen, "/guests/guest-linux-pv.cfg 'name=\"%s\"' 'extra=\"console=hvc0 rdinit=/init "
                            "ip=%s nfqueues=1\"' 'vif=[\"backend=xvif,mac=%s\"]'" % (self.name, ip, self.mac),
                  self.name)
        if self.dhcp:
            self.ip = None
        self.wait_up()

    def lease(self, timeout=120):
        """The address udhcpc set (XVIF-DOMU-DHCP on the console)."""
        def got():
            rc, out = self.xen.sh("grep -a XVIF-DOMU-DHCP %s 2>/dev/null" % self.console, quiet=True)
            m = re.findall(r"XVIF-DOMU-DHCP eth0 ip=([\d.]+)/(\d+) server=([\d.]+)", out)
            return m[-1] if m else None
        addr, plen, server = wait_until("%s's DHCP lease" % self.name, got, timeout=timeout, interval=2)
        self.ip = addr
        return addr, int(plen), server

    def address(self):
        if self.ip is None:
            self.lease()
        return self.ip

    def ping_to(self, target, count=100, interval="0.2", v6=False):
        if not v6:
            return self.ping(target, count=count, interval=interval)
        rc, out = self.run("ping6 -c %d -i %s -W 10 -q -I eth0 %s" % (count, interval, target),
                           timeout=count + 240)
        m = re.search(r"(\d+) packets transmitted, (\d+) packets received", out)
        assert m, "no ping6 summary from %s: %s" % (self.name, out)
        return int(m.group(1)), int(m.group(2)), out


@pytest.fixture(scope="module")
def hvm(xen, request):
    assert xen.outer is not None, "the session's Xen has no outer wire (module not marked outer_net?)"
    nic = request.module.NIC
    if nic is PASSTHROUGH and not xen.iommu:
        pytest.skip("passthrough needs a session booted with XVIF_XEN_IOMMU=intel (or amd)")
    if nic is EMULATED and xen.iommu:
        pytest.skip("this session's outer e1000 is left for passthrough (XVIF_XEN_IOMMU): no xenbr1")
    if nic is PASSTHROUGH:
        rc, out = xen.sh("xl pci-assignable-list", quiet=True)
        if PT_BDF not in out:
            rc, out = xen.sh("xl pci-assignable-add %s" % PT_BDF, timeout=120)
            assert rc == 0, out
    xen.hvm_nic = nic
    for name in ("hvma", "hvmb"):
        if domid(xen, name) is not None:
            xen.sh("xl destroy %s" % name, timeout=120)
    xen.hvm_xvif = start_xvif_hvm(xen, CMDLINE, nic["overrides"])
    guests = {
        "a": OutsideGuest(xen, "hvma", "dhcp", "00:16:3e:77:00:0a"),
        "b": OutsideGuest(xen, "hvmb", outernet.SUBNET + ".12", "00:16:3e:77:00:0b"),
    }
    for g in guests.values():
        g.create()
    yield xen, guests
    for g in guests.values():
        g.destroy()
    xen.sh("xl destroy xvif", timeout=120)


@pytest.fixture(autouse=True)
def serving(hvm):
    """Each test starts from the module's xvif and both guests (created
    again if xvif died), with the outer link up."""
    xen, guests = hvm
    xen.set_link(True)
    if domid(xen, "xvif") != xen.hvm_xvif:
        for g in guests.values():
            g.destroy()
        xen.hvm_xvif = start_xvif_hvm(xen, CMDLINE, xen.hvm_nic["overrides"])
    for g in guests.values():
        g.ensure()
    yield


def metrics(xen):
    """xvif's /metrics fetched by the peer outside, as {name{labels}: int}."""
    with xen.outer.connect(XVIF_IP, 9100, timeout=30) as s:
        head, body = netns.http_get(s, "/metrics")
    assert head.startswith("HTTP/1.0 200"), head
    return netns.parse_metrics(body.decode("utf-8", "replace"))


def nic_counter(m, what, direction=None):
    label = 'port="e1000",dir="%s"' % direction if direction else 'port="e1000"'
    key = "xvif_port_%s_total{%s}" % (what, label)
    assert key in m, "no %s in /metrics: %s" % (key, sorted(m)[:40])
    return m[key]


def test_boots_as_hvm_with_its_command_line_from_xenstore(hvm):
    xen, _ = hvm
    rc, out = xen.sh("xl list -l xvif | grep -m1 '\"type\"'", quiet=True)
    assert '"hvm"' in out, out
    log = xvif_log(xen)
    assert "command line: '%s' (from xenstore xvif/cmdline)" % CMDLINE in log, log[-3000:]
    # Found as an HVM container (the HVM info table), memory made write-back.
    assert re.search(r"HVM container: 1 vCPU\(s\), .*memory types: write-back", log), log[-3000:]
    assert "xvif ready" in log, log[-3000:]
    assert re.search(r"xen: Xen 4\.\d+, upcall vector", log), log[-3000:]
    rc, dm = xen.sh("cat %s" % QEMU_DM_LOG, quiet=True)
    assert not re.search(r"(?i)error|could not|failed", dm), dm


def test_finds_its_e1000_and_its_link_is_up(hvm):
    xen, _ = hvm
    log = xvif_log(xen)
    assert re.search(r"pci: \d+ function\(s\)", log), log[-3000:]
    if xen.hvm_nic is EMULATED:
        # No firmware placed its BARs: xvif did (memory and I/O), in the MMIO hole.
        assert re.search(r"pci: 00:[0-9a-f]{2}\.0 placed 2 BAR\(s\): \[Mem \{ addr: f[0-9a-f]{7}, size: 20000",
                         log), log[-3000:]
    else:
        # xen_pt shows the machine's BAR addresses: nothing to place.
        assert not re.search(r"pci: 00:[0-9a-f]{2}\.0 placed", log), log[-3000:]
    # The 82540EM has no MSI: INTx through Xen's I/O APIC, not polling.
    assert re.search(r"nic: e1000 at 00:[0-9a-f]{2}\.0 mac %s link up, interrupts: INTx \(vector" % xen.hvm_nic["mac"],
                     log), log[-3000:]


def test_guest_gets_its_address_by_dhcp_from_outside(hvm):
    xen, g = hvm
    addr, plen, server = g["a"].lease()
    assert plen == 24 and server == PEER, (addr, plen, server)
    first, last = (int(x.rsplit(".", 1)[1]) for x in (outernet.DHCP_FIRST, outernet.DHCP_LAST))
    assert addr.startswith(outernet.SUBNET + ".") and first <= int(addr.rsplit(".", 1)[1]) <= last, addr
    assert xen.outer.lease_of(g["a"].mac) == addr, open(xen.outer.leases).read()
    rc, out = g["a"].run("ip -4 addr show dev eth0")
    assert "inet %s/24" % addr in out, out


def test_pings_guest_to_peer_and_peer_to_guest(hvm):
    xen, g = hvm
    a = g["a"]
    a_ip = a.address()       # its DHCP lease first: without one it has no route
    sent, got, out = a.ping_to(PEER, count=100)
    assert got == sent == 100, out
    sent, got, out = xen.outer.ping(a_ip, count=100)
    assert got == sent == 100, out


def test_ipv6_link_local_both_ways(hvm):
    xen, g = hvm
    b = g["b"]
    peer_ll = eui64_link_local(xen.outer.run("cat", "/sys/class/net/%s/address" % outernet.TAP).stdout.strip())
    sent, got, out = b.ping_to(peer_ll, count=20, v6=True)
    assert got == sent == 20, out
    sent, got, out = xen.outer.ping(eui64_link_local(b.mac), count=20, ipv6=True)
    assert got == sent == 20, out


def tcp_each_way(xen, b, size, tag):
    """`size` bytes of TCP from the peer to guest `b` and back from `b` to
    the peer, each checked by md5 at the receiving end."""
    rc, out = b.run("rm -f /tmp/rx; (nc -l -p 5001 > /tmp/rx 2>/dev/null &); echo listening")
    assert "listening" in out, out
    data = os.urandom(size)
    time.sleep(1)
    with xen.outer.connect(b.ip, 5001, timeout=600) as s:
        s.sendall(data)
    wait_until("%d bytes at %s" % (size, b.name),
               lambda: last_line(b.run("stat -c %s /tmp/rx")[1]) == str(size), timeout=600, interval=3)
    rc, out = b.run("md5sum /tmp/rx")
    assert hashlib.md5(data).hexdigest() in out, out
    got = {"md5": hashlib.md5(), "n": 0}
    lst = xen.outer.listener(5002)
    lst.settimeout(300)

    def receive():
        conn, _ = lst.accept()
        conn.settimeout(600)
        with conn:
            while got["n"] < size:
                chunk = conn.recv(1 << 20)
                if not chunk:
                    break
                got["md5"].update(chunk)
                got["n"] += len(chunk)
    t = threading.Thread(target=receive, daemon=True)
    t.start()
    f = "/tmp/tx_" + tag
    try:
        rc, out = b.run("[ -s {f} ] || dd if=/dev/urandom of={f} bs=1024 count={k} 2>/dev/null; "
                        "md5sum {f}; nc -w 10 {p} 5002 < {f}; echo sent".format(f=f, k=size // 1024, p=PEER),
                        timeout=900)
        t.join(timeout=600)
    finally:
        lst.close()
    assert got["n"] == size, "peer got %d of %d bytes; guest: %s" % (got["n"], size, out)
    assert got["md5"].hexdigest() in out, out


def test_tcp_20mb_each_way_with_equal_md5(hvm):
    xen, g = hvm
    tcp_each_way(xen, g["b"], 20 * MB, "20m")


def test_management_address_answers_outside_and_nic_counters_match_the_wire(hvm):
    xen, g = hvm
    a = g["a"]
    sent, got, out = xen.outer.ping(XVIF_IP, count=100, interval=0.05)
    assert got == sent == 100, out
    before, tap0 = metrics(xen), xen.outer.tap_counters()
    sent, got, out = xen.outer.ping(a.address(), count=100, interval=0.05)
    assert got == sent == 100, out
    tap1, after = xen.outer.tap_counters(), metrics(xen)
    nic_rx = nic_counter(after, "packets", "rx") - nic_counter(before, "packets", "rx")
    nic_tx = nic_counter(after, "packets", "tx") - nic_counter(before, "packets", "tx")
    peer_tx, peer_rx = tap1["tx_packets"] - tap0["tx_packets"], tap1["rx_packets"] - tap0["rx_packets"]
    # 100 requests in, 100 replies out; besides them only the two /metrics
    # connections' own frames and the odd ARP or neighbour solicitation
    assert nic_rx >= 100 and nic_tx >= 100, (nic_rx, nic_tx)
    assert abs(nic_rx - peer_tx) <= 12 and abs(nic_tx - peer_rx) <= 12, \
        "NIC rx/tx %d/%d, peer's tap tx/rx %d/%d" % (nic_rx, nic_tx, peer_tx, peer_rx)
    for what in ("drops", "errors"):
        assert nic_counter(after, what, "rx") == nic_counter(before, what, "rx"), what


def counter_changes(before, after):
    """The /metrics counters that moved, as "name{labels} +N" lines."""
    return "\n".join("%s +%d" % (k, after[k] - before.get(k, 0)) for k in sorted(after)
                     if after[k] != before.get(k, 0))


def test_two_guests_talk_to_each_other_and_outside_at_once(hvm):
    xen, g = hvm
    a, b = g["a"], g["b"]
    a_ip = a.address()
    before = metrics(xen)
    for guest, target, f in ((a, b.ip, "/tmp/p_ab"), (b, PEER, "/tmp/p_bpeer")):
        rc, out = guest.run("rm -f {f}; (ping -c 100 -i 0.2 -W 10 -q {t} > {f} 2>&1 &); echo started".format(
            f=f, t=target))
        assert "started" in out, out
    sent, got, out = xen.outer.ping(a_ip, count=100)
    assert got == sent == 100, "peer -> %s: %s" % (a.name, out)
    for guest, f in ((a, "/tmp/p_ab"), (b, "/tmp/p_bpeer")):
        def summary():
            rc, out = guest.run("cat %s" % f)
            return re.search(r"(\d+) packets transmitted, (\d+) packets received", out)
        m = wait_until("%s's ping summary" % guest.name, summary, timeout=300, interval=5)
        assert m.group(1) == m.group(2) == "100", "%s: %s\nxvif's counters that moved:\n%s\nvifs: %s" % (
            guest.name, m.group(0), counter_changes(before, metrics(xen)),
            [xenstore_kv(xen, "/local/domain/%d/data/xvif/vifs/vif%d_0" % (xen.hvm_xvif, x.domid)) for x in (a, b)])


def set_nic_link(xen, up):
    """The link of xvif's NIC, pulled or put back where the NIC lives: the
    e1000 qemu-xen emulates for it (id nic0, libxl's name for the first
    emulated NIC) through qemu-xen's monitor, or the outer machine's e1000
    passed through to it (QMP on the outer QEMU)."""
    if xen.hvm_nic is PASSTHROUGH:
        xen.set_link(up)
        return
    rc, out = xen.sh("xl qemu-monitor-command xvif 'set_link nic0 %s'" % ("on" if up else "off"), quiet=True)
    assert rc == 0 and "rror" not in out, out


def test_nic_link_down_and_up(hvm):
    xen, g = hvm
    b = g["b"]
    before = metrics(xen)
    downs = xen.sh("grep -c 'e1000: link down' %s" % XVIF_CONSOLE, quiet=True)[1]
    set_nic_link(xen, False)
    try:
        wait_until("xvif to see the link down",
                   lambda: xen.sh("grep -c 'e1000: link down' %s" % XVIF_CONSOLE, quiet=True)[1] != downs,
                   timeout=60)
        sent, got, out = xen.outer.ping(b.ip, count=5, interval=0.5, deadline=15)
        assert got == 0, "pings crossed a pulled link: " + out
    finally:
        set_nic_link(xen, True)
    wait_until("the peer to reach %s again" % b.name, lambda: xen.outer.ping(b.ip, count=1, deadline=10)[1] == 1,
               timeout=120, interval=2)
    sent, got, out = xen.outer.ping(b.ip, count=50, interval=0.1)
    assert got == sent == 50, out
    sent, got, out = b.ping_to(PEER, count=20)
    assert got == sent == 20, out
    after = metrics(xen)
    assert nic_counter(after, "link_changes") - nic_counter(before, "link_changes") == 2, \
        (nic_counter(before, "link_changes"), nic_counter(after, "link_changes"))
    assert nic_counter(after, "packets", "rx") - nic_counter(before, "packets", "rx") >= 70
    assert nic_counter(after, "packets", "tx") - nic_counter(before, "packets", "tx") >= 70


def test_virtio_net_nic_instead_of_e1000(hvm):
    """The other NIC xvif drives: qemu-xen emulates a virtio-net (modern and
    legacy, with MSI-X) for a fresh xvif in place of the e1000. It runs last:
    it replaces the module's xvif, and the guests get new vifs on it."""
    xen, g = hvm
    if xen.hvm_nic is not EMULATED:
        pytest.skip("the emulated-NIC session runs this: no xenbr1 here")
    b = g["b"]
    for guest in g.values():
        guest.destroy()
    vif = 'vif=["type=ioemu,model=virtio-net-pci,bridge=xenbr1,mac=%s"]' % EMULATED["mac"]
    xen.hvm_xvif = start_xvif_hvm(xen, CMDLINE, (vif,))
    log = xvif_log(xen)
    m = re.search(r"nic: virtio-net at 00:[0-9a-f]{2}\.0 mac %s link up, interrupts: (\S+)" % EMULATED["mac"], log)
    assert m, log[-3000:]
    assert m.group(1) in ("MSI-X", "MSI", "INTx"), m.group(0)
    b.create()
    sent, got, out = b.ping_to(PEER, count=50)
    assert got == sent == 50, out
    sent, got, out = xen.outer.ping(b.ip, count=50)
    assert got == sent == 50, out
    tcp_each_way(xen, b, 4 * MB, "4m")
    m = metrics(xen)
    key = 'xvif_port_packets_total{port="virtio-net",dir="rx"}'
    assert m.get(key, 0) >= 100, sorted(k for k in m if k.startswith("xvif_port_"))
