"""`make run`'s demo, driven without a person: its own steps (xvif as an HVM
container owning the NIC, a guest behind it reaching the peer outside Xen),
then what its printed hints promise (`xl console xvif`, `xl console guesta`,
ping and wget to the peer, a detach and re-attach after which the guest's
new device comes up with its address).

Needs $XVIF_ELF (the Makefile sets it)."""
import pytest

from demo import GUEST_IP, HELLO, HTTP_PORT, PEER_IP, XVIF_IP, run_demo
from guests import domid, wait_until

pytestmark = pytest.mark.outer_net


@pytest.fixture(scope="module")
def demo(xen):
    for name in ("guesta", "xvif"):
        if domid(xen, name) is not None:
            xen.sh("xl destroy %s" % name, timeout=120)
    g = run_demo(xen)
    yield xen, g
    g.destroy()
    xen.sh("xl destroy xvif", timeout=120)


def test_demo_guest_reaches_xvif(demo):
    xen, g = demo
    sent, got, out = g.ping(XVIF_IP, count=10, interval="0.2")
    assert got == 10, out


def test_demo_guest_reaches_the_peer_outside_through_xvifs_nic(demo):
    xen, g = demo
    sent, got, out = g.ping(PEER_IP, count=10, interval="0.2")
    assert got == 10, out
    rc, out = g.run("wget -qO- http://%s:%d/" % (PEER_IP, HTTP_PORT))
    assert HELLO.decode().strip() in out, out
    rc, out = xen.sh("xl list -l xvif | grep -m1 '\"type\"'", quiet=True)
    assert '"hvm"' in out, out


def test_xl_console_xvif_shows_its_log(demo):
    xen, g = demo
    d = domid(xen, "xvif")
    # xvif logs every change of data/xvif-ping: written while we watch.
    seen = xen.console("xvif", r"xenstore watch: data/xvif-ping = 'hello-from-dom0'",
                       trigger="xenstore-write /local/domain/%d/data/xvif-ping hello-from-dom0" % d)
    assert "hello-from-dom0" in seen


def test_xl_console_guest_is_its_shell(demo):
    xen, g = demo
    seen = xen.console("guesta", r"demo-42", send="echo demo-$((6*7))")
    assert "demo-42" in seen


def test_reattached_vif_comes_up_with_its_address(demo):
    xen, g = demo
    rc, out = xen.sh("xl network-detach guesta 0", timeout=120)
    assert rc == 0, out
    rc, out = xen.sh("xl network-attach guesta backend=xvif mac=%s" % g.mac, timeout=120)
    assert rc == 0, out
    wait_until("guesta's new device configured by its init", lambda: g.grep("XVIF-DOMU-HOTPLUG"),
               timeout=120, interval=2)
    rc, out = g.run("ip -4 addr")
    assert GUEST_IP in out, out
    sent, got, out = g.ping(XVIF_IP, count=10, interval="0.2")
    assert got >= 9, out      # the first may go to ARP while the link comes up
