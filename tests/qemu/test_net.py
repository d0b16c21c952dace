"""xvif as a network node: the real ELF on QEMU TCG with each NIC model,
reached from a private network namespace through a tap device."""
import os
import random
import re
import socket
import struct
import subprocess
import tempfile
import time

import pytest
from netvm import GUEST_IP, GUEST_MAC, HOST_IP, NetVM

NICS = ["e1000", "virtio"]
STATIC = "ip=%s/24 gw=%s" % (GUEST_IP, HOST_IP)


@pytest.fixture(scope="module", params=NICS)
def vm(request):
    v = NetVM(request.param, STATIC)
    try:
        v.wait_for(r"xvif ready")
        yield v
    finally:
        code = v.stop()
        assert "CRASH" not in v.text() and "PANIC" not in v.text(), v.text()
        assert code in (0, 33), v.text()


def test_nic_is_found_with_interrupts(vm):
    how = {"e1000": "INTx", "virtio": "MSI-X"}[vm.nic]
    name = {"e1000": "e1000", "virtio": "virtio-net"}[vm.nic]
    m = vm.wait_for(r"nic: (\S+) at \S+ mac (\S+) link up, interrupts: (\S+)")
    assert m.groups() == (name, GUEST_MAC, how), vm.text()
    assert "mgmt: 10.0.2.15/24" in vm.text()


def test_200_pings_no_loss(vm):
    sent, got, _ = vm.ping(200, interval=0.01)
    assert (sent, got) == (200, 200)


def test_large_pings(vm):
    sent, got, _ = vm.ping(20, size=1472, interval=0.02)
    assert (sent, got) == (20, 20)


def test_ipv6_link_local_ping(vm):
    ll = "fe80::5054:ff:fe12:3456%tap0"
    # smoltcp drops the reply that triggers its own neighbour solicitation
    # (it queues nothing), so the first exchange settles NDP on both sides.
    vm.ping(2, interval=0.2, target=ll, ipv6=True)
    sent, got, _ = vm.ping(10, interval=0.05, target=ll, ipv6=True)
    assert (sent, got) == (10, 10)


def udp_echo(vm, count, window=16, seed=1):
    """Sends `count` datagrams of mixed sizes (1..1472), at most `window` in
    flight, and compares every echoed payload with what was sent."""
    rng = random.Random(seed)
    s = vm.udp_socket()
    outstanding = {}
    sent_bytes = 0
    nxt = 0
    done = 0
    with s:
        while done < count:
            while nxt < count and len(outstanding) < window:
                size = 1 if nxt == 0 else 1472 if nxt == 1 else rng.randint(1, 1472)
                head = struct.pack("!I", nxt)[: size] if size >= 4 else bytes([nxt & 0xff]) * size
                payload = head + rng.randbytes(size - len(head))
                outstanding[payload[:4] if size >= 4 else (nxt, payload)] = payload
                s.sendto(payload, (GUEST_IP, 7))
                sent_bytes += size
                nxt += 1
            data, peer = s.recvfrom(2048)
            assert peer == (GUEST_IP, 7)
            key = data[:4] if len(data) >= 4 else next((k for k, p in outstanding.items() if p == data), None)
            assert key in outstanding, "unexpected echo %r" % data[:16]
            assert outstanding.pop(key) == data
            done += 1
    return sent_bytes


def test_10000_udp_echoes_of_mixed_sizes(vm):
    udp_echo(vm, 10_000)


def test_metrics_match_the_traffic(vm):
    before = vm.metrics()
    nbytes = udp_echo(vm, 500, seed=7)
    sent, got, _ = vm.ping(30, interval=0.01)
    assert got == 30
    after = vm.metrics()
    d = lambda k: after[k] - before[k]  # noqa: E731
    assert d("xvif_mgmt_udp_echo_packets_total") == 500
    assert d("xvif_mgmt_udp_echo_bytes_total") == nbytes
    assert d("xvif_mgmt_icmp_echo_requests_total") == 30
    assert d("xvif_mgmt_http_requests_total") == 1
    port = {"e1000": "e1000", "virtio": "virtio-net"}[vm.nic]
    rx = 'xvif_port_packets_total{port="%s",dir="rx"}' % port
    tx = 'xvif_port_packets_total{port="%s",dir="tx"}' % port
    # Each echo and ping is one frame each way, plus the first HTTP
    # connection's segments; ARP/NDP may add a few.
    assert 530 + 3 <= d(rx) <= 530 + 40, (d(rx), before, after)
    assert 530 + 3 <= d(tx) <= 530 + 40, (d(tx), before, after)
    rxb = 'xvif_port_bytes_total{port="%s",dir="rx"}' % port
    # Ethernet + IPv4 + UDP headers per datagram; pings are 98 bytes.
    assert d(rxb) >= nbytes + 500 * 42 + 30 * 98
    assert after['xvif_port_errors_total{port="%s",dir="rx"}' % port] == 0
    assert after["xvif_mgmt_udp_echo_drops_total"] == 0
    # The NIC and the management stack are ports of the switch: the same
    # frames show on both switch ports.
    sw_nic = 'xvif_switch_rx_packets_total{port="%s"}' % port
    sw_mgmt = 'xvif_switch_rx_packets_total{port="mgmt"}'
    assert 530 + 3 <= d(sw_nic) <= 530 + 40, (d(sw_nic), after)
    assert 530 + 3 <= d(sw_mgmt) <= 530 + 40, (d(sw_mgmt), after)
    assert after["xvif_switch_fdb_entries"] >= 2


def test_capture_streams_pcap_that_tcpdump_reads(vm):
    """GET /capture on the NIC's switch port while the host pings: 20
    frames in pcap, read back by tcpdump; bad requests get a 400."""
    import threading
    port = {"e1000": "e1000", "virtio": "virtio-net"}[vm.nic]
    got = {}
    t = threading.Thread(target=lambda: got.update(r=vm.http_get_raw(
        "/capture?port=%s&count=20&secs=30" % port, timeout=40)))
    t.start()
    time.sleep(1)
    sent, answered, _ = vm.ping(15, interval=0.1)
    t.join(60)
    head, body = got["r"]
    assert head.startswith("HTTP/1.0 200") and "application/vnd.tcpdump.pcap" in head, head
    with tempfile.NamedTemporaryFile(suffix=".pcap") as f:
        f.write(body)
        f.flush()
        r = subprocess.run(["tcpdump", "-n", "-r", f.name], capture_output=True, text=True, timeout=30)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and len(lines) == 20, (r.stdout, r.stderr)
    assert any("ICMP echo request" in l for l in lines) and any("ICMP echo reply" in l for l in lines), lines
    for bad, why in (("/capture?port=nope", "no port 'nope'"), ("/capture?port=%s&count=0" % port, "count must be"),
                     ("/capture?secs=5", "port= is missing")):
        head, body = vm.http_get(bad)
        assert head.startswith("HTTP/1.0 400") and why in body, (bad, head, body)


def ipv4_udp(src_mac, dst_mac, payload, bad_ip_csum=False, bad_udp_csum=False):
    def csum(b):
        if len(b) % 2:
            b += b"\0"
        s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        return ~s & 0xFFFF

    src, dst = socket.inet_aton(HOST_IP), socket.inet_aton(GUEST_IP)
    udp_len = 8 + len(payload)
    pseudo = src + dst + struct.pack("!BBH", 0, 17, udp_len)
    udp = struct.pack("!HHHH", 40000, 7, udp_len, 0) + payload
    c = csum(pseudo + udp) or 0xFFFF
    if bad_udp_csum:
        c ^= 0x5555
    udp = udp[:6] + struct.pack("!H", c) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 1, 0, 64, 17, 0, src, dst)
    ic = csum(ip) ^ (0x1111 if bad_ip_csum else 0)
    ip = ip[:10] + struct.pack("!H", ic) + ip[12:]
    return dst_mac + src_mac + b"\x08\x00" + ip + udp


def test_bad_input_is_counted_and_dropped(vm):
    port = {"e1000": "e1000", "virtio": "virtio-net"}[vm.nic]
    guest = bytes.fromhex(GUEST_MAC.replace(":", ""))
    host = vm.host_mac()
    vm.ns.run("ip", "link", "set", "tap0", "mtu", "4000")
    vm.ping(3, interval=0.05)  # ARP settled, link warm
    before = vm.metrics()
    frames = []
    frames += [guest + host + b"\x88\xb5" + bytes(50)] * 3  # unknown EtherType
    frames += [ipv4_udp(host, guest, b"x" * 32, bad_ip_csum=True)] * 2
    frames += [ipv4_udp(host, guest, b"y" * 32, bad_udp_csum=True)] * 2
    frames += [ipv4_udp(host, guest, b"z" * 1600)]  # 1642-byte frame: oversized
    frames += [ipv4_udp(host, guest, b"w" * 3000)]  # spans several buffers: oversized
    frames += [ipv4_udp(host, guest, b"good")]  # a good one is still echoed
    vm.send_raw(frames)
    sent, got, _ = vm.ping(5, interval=0.05)
    assert got == 5
    after = vm.metrics()
    d = lambda k: after[k] - before[k]  # noqa: E731
    assert d("xvif_mgmt_rx_unknown_ethertype_total") == 3
    assert d("xvif_mgmt_rx_bad_checksum_total") == 4
    assert d('xvif_port_rx_oversize_total{port="%s"}' % port) == 2
    assert d('xvif_port_errors_total{port="%s",dir="rx"}' % port) == 2
    assert d("xvif_mgmt_udp_echo_packets_total") == 1
    assert after['xvif_port_resets_total{port="%s"}' % port] == 0


@pytest.mark.parametrize("nic", NICS)
def test_polling_mode(nic):
    with NetVM(nic, STATIC + " nic=poll") as v:
        v.wait_for(r"xvif ready")
        assert re.search(r"interrupts: polling \(nic=poll\)", v.text()), v.text()
        sent, got, _ = v.ping(50, interval=0.01)
        assert got == 50
        udp_echo(v, 500)


@pytest.mark.parametrize("nic", NICS)
def test_dhcp_address_from_dnsmasq(nic):
    with NetVM(nic, "ip=dhcp") as v, tempfile.TemporaryDirectory() as tmp:
        dns = v.ns.popen(["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--interface=tap0",
                          "--bind-interfaces", "--dhcp-range=10.0.2.100,10.0.2.110,255.255.255.0,1h",
                          "--dhcp-option=option:router,10.0.2.2", "--dhcp-leasefile=%s/leases" % tmp,
                          "--pid-file=%s/pid" % tmp, "--user=root"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            m = v.wait_for(r"mgmt: DHCP lease (10\.0\.2\.1\d\d)/24 router Some\(10\.0\.2\.2\)", timeout=60)
            addr = m.group(1)
            sent, got, _ = v.ping(10, interval=0.05, target=addr)
            assert got == 10
            with open(os.path.join(tmp, "leases")) as f:
                assert addr in f.read() and GUEST_MAC in open(os.path.join(tmp, "leases")).read()
        finally:
            dns.kill()
            dns.wait()


@pytest.mark.parametrize("nic", NICS)
def test_pc_machine_uses_port_io_config_access(nic):
    # i440fx has no MCFG: configuration space through ports 0xcf8/0xcfc, and
    # the e1000's INTx arrives through the PIIX interrupt router.
    with NetVM(nic, STATIC, machine="pc") as v:
        v.wait_for(r"xvif ready")
        assert re.search(r"pci: \d+ function\(s\) via port I/O", v.text()), v.text()
        how = {"e1000": "INTx", "virtio": "MSI-X"}[nic]
        assert re.search(r"link up, interrupts: %s" % how, v.text()), v.text()
        sent, got, _ = v.ping(50, interval=0.01)
        assert got == 50
        udp_echo(v, 300)
