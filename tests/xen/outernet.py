"""A wire from the nested Xen to a real peer outside it.

XenVM(outer_net=True) gives the outer QEMU an e1000 (`-device e1000,
id=outer0`, PCI 00:05.0) on a tap device, and runs QEMU inside a network
namespace of its own that holds that tap with the peer's address
(PEER_IP/24). In dom0 the e1000 is enslaved to bridge xenbr1, where qemu-xen
puts the tap of an HVM guest's emulated NIC (`bridge=xenbr1`): so xvif's NIC
in an HVM container, and the guests behind it, share an Ethernet segment
with this namespace. dnsmasq serves DHCP there (DHCP_FIRST..DHCP_LAST).

The subnet keeps clear of the harness's 10.0.0.0/24 (dom0's xenbr0). The
namespace and dnsmasq go away on close(); nothing outside the namespace is
touched. Test clients (ping, TCP sockets) run inside it: `run()`, `popen()`,
`socket()`.

Needs `ip` and `dnsmasq` on the host (tests/xen/setup.sh installs dnsmasq).
"""
import itertools
import os
import re
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import netns  # noqa: E402

SUBNET = "192.168.77"
PEER_IP = SUBNET + ".1"
DHCP_FIRST, DHCP_LAST = SUBNET + ".100", SUBNET + ".199"
TAP = "tap0"
NIC_ID = "outer0"            # QEMU device id of the outer e1000 (QMP set_link)
NIC_PCI_ADDR = "0x5"         # fixed slot, so a later passthrough can name it
NIC_MAC = "52:54:00:77:00:10"

_seq = itertools.count()


def _sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kw)


class OuterNet:
    """A network namespace with tap TAP at PEER_IP/24 and dnsmasq on it."""

    def __init__(self, log_dir):
        self.name = "xvif-outer-%d-%d" % (os.getpid(), next(_seq))
        self.log_dir = log_dir
        self.leases = os.path.join(log_dir, "dnsmasq.leases")
        self.dnsmasq = None
        self.servers = []
        _sh("ip", "netns", "add", self.name)
        try:
            self.run("ip", "link", "set", "lo", "up")
            self.run("ip", "tuntap", "add", TAP, "mode", "tap")
            # No duplicate-address detection: the link-local address is usable at once.
            self.run("sysctl", "-qw", "net.ipv6.conf.%s.accept_dad=0" % TAP)
            self.run("ip", "addr", "add", PEER_IP + "/24", "dev", TAP)
            self.run("ip", "link", "set", TAP, "up")
            self.dnsmasq_log = open(os.path.join(log_dir, "dnsmasq.log"), "w")
            self.dnsmasq = self.popen(
                ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--interface=" + TAP,
                 "--bind-interfaces", "--dhcp-range=%s,%s,255.255.255.0,1h" % (DHCP_FIRST, DHCP_LAST),
                 "--dhcp-leasefile=" + self.leases, "--pid-file=" + os.path.join(log_dir, "dnsmasq.pid"),
                 "--user=root", "--log-dhcp"],
                stdin=subprocess.DEVNULL, stdout=self.dnsmasq_log, stderr=subprocess.STDOUT)
        except Exception:
            self.close()
            raise

    def wrap(self, argv):
        """argv run inside the namespace (`ip netns exec` execs it: same PID)."""
        return ["ip", "netns", "exec", self.name] + list(argv)

    def run(self, *args, check=True, **kw):
        return _sh(*self.wrap(args), check=check, **kw)

    def popen(self, args, **kw):
        return subprocess.Popen(self.wrap(args), **kw)

    def entered(self):
        """Runs the block inside the namespace; sockets made here stay in it."""
        return netns.entered(self.name)

    def socket(self, *args):
        with self.entered():
            return socket.socket(*args)

    def connect(self, addr, port, timeout=30):
        with self.entered():
            return socket.create_connection((addr, port), timeout=timeout)

    def listener(self, port, ipv6=False):
        family = socket.AF_INET6 if ipv6 else socket.AF_INET
        s = self.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::" if ipv6 else "0.0.0.0", port))
        s.listen(4)
        return s

    def serve(self, port, body):
        """An HTTP/1.0 server on PEER_IP:port answering every GET with `body`
        (bytes), in a daemon thread until close(). Returns the listener."""
        lst = self.listener(port)

        def loop():
            while True:
                try:
                    conn, _ = lst.accept()
                except OSError:
                    return                      # listener closed
                with conn:
                    conn.settimeout(30)
                    try:
                        req = conn.recv(4096)
                        if req.startswith(b"GET "):
                            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                    except OSError:
                        pass
        threading.Thread(target=loop, daemon=True).start()
        self.servers.append(lst)
        return lst

    def ping(self, target, count=100, interval=0.2, ipv6=False, dev=None, deadline=None):
        """(sent, received, output) of the host's ping inside the namespace;
        a link-local IPv6 target needs dev (the tap)."""
        if ipv6 and target.startswith("fe80") and "%" not in target:
            target += "%" + (dev or TAP)
        # Without a deadline, ping sends exactly `count` and then waits for
        # the replies still on their way; with -w it stops at the count-th
        # reply, and requests still in flight then count as lost.
        args = ["ping", "-6" if ipv6 else "-4", "-n", "-q", "-c", str(count), "-i", str(interval),
                "-W", "10"] + (["-w", str(deadline)] if deadline else []) + [target]
        r = self.run(*args, check=False)
        m = re.search(r"(\d+) packets transmitted, (\d+) received", r.stdout)
        assert m, "no ping summary: " + r.stdout + r.stderr
        return int(m.group(1)), int(m.group(2)), r.stdout

    def lease_of(self, mac):
        """The address dnsmasq leased to `mac`, or None."""
        try:
            with open(self.leases) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 3 and parts[1].lower() == mac.lower():
                        return parts[2]
        except OSError:
            pass
        return None

    def tap_counters(self):
        """rx/tx packets and bytes of the tap (the peer's side of the wire)."""
        out = {}
        for k in ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes"):
            out[k] = int(self.run("cat", "/sys/class/net/%s/statistics/%s" % (TAP, k)).stdout)
        return out

    def close(self):
        for lst in self.servers:
            try:
                lst.shutdown(socket.SHUT_RDWR)      # wakes the thread's accept()
            except OSError:
                pass
            lst.close()
        self.servers = []
        if self.dnsmasq is not None and self.dnsmasq.poll() is None:
            # our own `ip netns exec dnsmasq` process (exec'd: the same PID)
            self.dnsmasq.terminate()
            try:
                self.dnsmasq.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.dnsmasq.kill()
                self.dnsmasq.wait()
        self.dnsmasq = None
        _sh("ip", "netns", "del", self.name, check=False)


def qemu_args(qmp_path):
    """The outer QEMU's options for the wire, and a QMP socket (set_link)."""
    return ["-netdev", "tap,id=outer,ifname=%s,script=no,downscript=no" % TAP,
            "-device", "e1000,netdev=outer,id=%s,mac=%s,addr=%s,romfile=" % (NIC_ID, NIC_MAC, NIC_PCI_ADDR),
            "-qmp", "unix:%s,server=on,wait=off" % qmp_path]


def qmp(path, command, arguments=None, timeout=10):
    """One QMP command on the outer QEMU's socket; returns its "return"."""
    import json
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        f = s.makefile("rw")

        def reply():
            while True:
                msg = json.loads(f.readline())
                if "event" not in msg:
                    return msg
        reply()                                          # greeting
        f.write(json.dumps({"execute": "qmp_capabilities"}) + "\n")
        f.flush()
        reply()
        cmd = {"execute": command}
        if arguments:
            cmd["arguments"] = arguments
        f.write(json.dumps(cmd) + "\n")
        f.flush()
        msg = reply()
        if "error" in msg:
            raise RuntimeError("QMP %s: %s" % (command, msg["error"]))
        return msg.get("return")
