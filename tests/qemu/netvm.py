"""xvif on a real QEMU NIC, reachable from a private network namespace.

Each VM gets its own namespace (`ip netns add`) holding a tap device with the
host side's address; QEMU runs inside it (`ip netns exec`) with
`-netdev tap`. Traffic only ever targets addresses inside that namespace.
Everything is torn down on exit: QEMU is stopped by PID, the namespace deleted.
"""
import itertools
import os
import re
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import netns  # noqa: E402

from qemu import ELF, QEMU

HOST_IP = "10.0.2.2"
GUEST_IP = "10.0.2.15"
GUEST_MAC = "52:54:00:12:34:56"
_seq = itertools.count()

NIC_DEVICES = {
    "e1000": "e1000",
    "virtio": "virtio-net-pci",
}


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kw)


class NetNs:
    """A network namespace with a tap device `tap0` at HOST_IP/24."""

    def __init__(self):
        self.name = "xvif-t%d-%d" % (os.getpid(), next(_seq))
        sh("ip", "netns", "add", self.name)
        try:
            self.run("ip", "link", "set", "lo", "up")
            self.run("ip", "tuntap", "add", "tap0", "mode", "tap")
            # No duplicate-address detection: the link-local address is usable at once.
            self.run("sysctl", "-qw", "net.ipv6.conf.tap0.accept_dad=0")
            self.run("ip", "addr", "add", HOST_IP + "/24", "dev", "tap0")
            self.run("ip", "link", "set", "tap0", "up")
        except Exception:
            self.close()
            raise

    def run(self, *args, check=True, **kw):
        return sh("ip", "netns", "exec", self.name, *args, check=check, **kw)

    def popen(self, args, **kw):
        return subprocess.Popen(["ip", "netns", "exec", self.name] + list(args), **kw)

    def entered(self):
        """Runs the block inside the namespace; sockets made here stay in it."""
        return netns.entered(self.name)

    def socket(self, *args):
        with self.entered():
            return socket.socket(*args)

    def close(self):
        sh("ip", "netns", "del", self.name, check=False)


class NetVM:
    """xvif booted with one NIC (`e1000` or `virtio`) on a fresh namespace."""

    def __init__(self, nic, append="", timeout=300, mem="128M", machine="q35"):
        self.nic = nic
        self.ns = NetNs()
        self.out = []
        args = [
            "timeout", "--kill-after=5", str(timeout),
            QEMU, "-machine", machine, "-accel", "tcg", "-cpu", "max", "-m", mem,
            "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot", "-nodefaults",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
            "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
            "-device", "%s,netdev=n0,romfile=,mac=%s" % (NIC_DEVICES[nic], GUEST_MAC),
            *self.qemu_kernel_args(append),
        ]
        self.proc = self.ns.popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def qemu_kernel_args(self, append):
        return ["-kernel", ELF, "-append", append]

    def _read(self):
        for line in iter(self.proc.stdout.readline, b""):
            self.out.append(line.decode("utf-8", "replace"))

    def text(self):
        return "".join(self.out)

    def wait_for(self, pattern, timeout=30):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = re.search(pattern, self.text())
            if m:
                return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError("no %r in console:\n%s" % (pattern, self.text()[-4000:]))

    def console(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.console("poweroff")
                self.proc.wait(timeout=10)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            # Our own `timeout` process, by PID: SIGTERM, which it forwards to
            # QEMU (a SIGKILL would orphan QEMU), then SIGKILL as a last resort.
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        self.ns.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # --- host-side clients, all inside the namespace ---

    def ping(self, count, size=56, interval=0.01, target=GUEST_IP, ipv6=False, deadline=120):
        args = ["ping", "-6" if ipv6 else "-4", "-n", "-q", "-c", str(count), "-i", str(interval),
                "-s", str(size), "-W", "2", "-w", str(deadline), target]
        r = self.ns.run(*args, check=False)
        m = re.search(r"(\d+) packets transmitted, (\d+) received", r.stdout)
        assert m, r.stdout + r.stderr
        rtt = re.search(r"= [\d.]+/([\d.]+)/", r.stdout)
        return int(m.group(1)), int(m.group(2)), float(rtt.group(1)) if rtt else None

    def udp_socket(self, timeout=2.0):
        s = self.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(timeout)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        return s

    def http_get_raw(self, path, port=9100, timeout=10):
        """(head, body bytes) of GET `path`."""
        with self.ns.entered():
            s = socket.create_connection((GUEST_IP, port), timeout=timeout)
        with s:
            return netns.http_get(s, path)

    def http_get(self, path="/metrics", port=9100, timeout=10):
        head, body = self.http_get_raw(path, port, timeout)
        return head, body.decode()

    def metrics(self):
        head, body = self.http_get()
        assert head.startswith("HTTP/1.0 200"), head
        return netns.parse_metrics(body)

    def send_raw(self, frames):
        """Sends raw Ethernet frames out of tap0 (towards xvif)."""
        with self.ns.entered():
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        with s:
            s.bind(("tap0", 0))
            for f in frames:
                s.send(f)

    def host_mac(self):
        return bytes.fromhex(self.ns.run("cat", "/sys/class/net/tap0/address").stdout.strip().replace(":", ""))
