"""Helpers shared by the QEMU and Xen harnesses (tests/qemu/netvm.py,
tests/xen/outernet.py): entering a network namespace from Python, and
reading xvif's Prometheus counters."""
import contextlib
import ctypes
import os

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def entered(name):
    """Runs the block inside namespace `name`; sockets made there stay in it."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    fd = os.open("/var/run/netns/" + name, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        yield
    finally:
        _libc.setns(own, CLONE_NEWNET)
        os.close(fd)
        os.close(own)


def http_get(sock, path):
    """GET `path` over the connected socket `sock`, read to the end:
    (head as text, body bytes)."""
    sock.sendall(("GET %s HTTP/1.0\r\n\r\n" % path).encode())
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode("utf-8", "replace"), body


def parse_metrics(body):
    """A /metrics body as {name{labels}: int}, comments left out."""
    values = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            key, _, v = line.rpartition(" ")
            values[key] = int(v)
    return values
