"""xvif as a PVH domU on a real Xen 4.17 (nested in QEMU TCG): xenstore,
watches, PV console, grant table, shutdown/destroy/restart.

Needs $XVIF_ELF (the Makefile sets it to the release ELF)."""
import re
import time

import pytest

from guests import xl_create

CONSOLE = "/var/log/xen/console/guest-xvif.log"


def console_size(xen):
    rc, out = xen.sh("stat -c %%s %s 2>/dev/null || echo 0" % CONSOLE, quiet=True)
    return int(out.strip().splitlines()[-1])


def console_since(xen, offset):
    rc, out = xen.sh("tail -c +%d %s 2>/dev/null" % (offset + 1, CONSOLE), quiet=True)
    return out


def wait_console(xen, offset, pattern, timeout=60):
    deadline = time.time() + timeout
    while True:
        text = console_since(xen, offset)
        if re.search(pattern, text):
            return text
        if time.time() > deadline:
            raise AssertionError("no %r on xvif's console after %ds:\n%s" % (pattern, timeout, text[-3000:]))
        time.sleep(1)


def create(xen, extra=""):
    off = console_size(xen)
    t0 = time.time()
    xl_create(xen, "/guests/xvif.cfg 'extra=\"%s\"'" % extra, "xvif")
    text = wait_console(xen, off, r"xvif ready")
    return off, text, time.time() - t0


def domid(xen):
    rc, out = xen.sh("xl domid xvif", quiet=True)
    return int(out.strip().splitlines()[-1]) if rc == 0 else None


@pytest.fixture
def xvif(xen):
    """A running xvif; destroyed after the test whatever happened."""
    if domid(xen) is not None:
        xen.sh("xl destroy xvif", timeout=60)
    off, text, secs = create(xen, "log=debug selftest=xen")
    xen.timing("xvif create-to-ready", secs)
    yield off, text
    if domid(xen) is not None:
        xen.sh("xl destroy xvif", timeout=60)


def test_boots_reads_identity_and_grant_table_works(xen, xvif):
    off, text = xvif
    d = domid(xen)
    assert d is not None
    m = re.search(r"xen: domid (\d+) name 'xvif', xenstore ready (\d+) ms after entry", text)
    assert m and int(m.group(1)) == d, text
    assert re.search(r"xen: Xen 4\.17, upcall vector 0x[0-9a-f]+, (\d+) grant entries, PV console attached", text), text
    assert "clock: TSC" in text and "(HypervisorCpuid)" in text, text
    # The grant self test ran against the real hypervisor.
    assert "selftest xen: grant copy ok, grant map/unmap ok, bad ref copy -> Err(Grant(BadGntref)), " \
           "bad ref map -> Err(Grant(BadGntref))" in text, text
    # It wrote a key under its home and read it back; dom0 sees it.
    rc, out = xen.sh("xenstore-read /local/domain/%d/data/xvif-status" % d, check=True)
    assert out.strip().splitlines()[-1] == "ready"
    rc, out = xen.sh("xenstore-read /local/domain/%d/control/feature-poweroff" % d, check=True)
    assert out.strip().splitlines()[-1] == "1"
    # The PV console carries the whole boot log (replayed from before attach).
    assert "xvif 0.1.0 booting" in text and "command line: 'log=debug selftest=xen'" in text, text


def test_watch_event_round_trip(xen, xvif):
    off, _ = xvif
    d = domid(xen)
    for token in ("first-%d" % time.time_ns(), "second with spaces"):
        xen.sh("xenstore-write /local/domain/%d/data/xvif-ping '%s'" % (d, token), check=True)
        deadline = time.time() + 30
        while True:
            rc, out = xen.sh("xenstore-read /local/domain/%d/data/xvif-pong" % d, quiet=True)
            if rc == 0 and out.strip().splitlines()[-1] == token:
                break
            assert time.time() < deadline, "no pong for %r: %s" % (token, out)
            time.sleep(0.5)
        wait_console(xen, off, re.escape("xenstore watch: data/xvif-ping = '%s' (%d bytes" % (token, len(token))))


def test_hostile_xenstore_values_do_not_hurt(xen, xvif):
    off, _ = xvif
    d = domid(xen)
    home = "/local/domain/%d" % d
    # An unknown shutdown request is refused and xvif keeps serving.
    xen.sh("xenstore-write %s/control/shutdown frobnicate" % home, check=True)
    wait_console(xen, off, r"unsupported shutdown request 'frobnicate' ignored")
    # A value near the 4096-byte payload limit, and one with odd bytes.
    # (made inside dom0: a typed line that long overflows the serial tty)
    xen.sh("xenstore-write %s/data/xvif-ping \"$(head -c 4000 /dev/zero | tr '\\0' x)\"" % home, check=True)
    wait_console(xen, off, r"data/xvif-ping = 'x{200}'\.\.\. \(4000 bytes;")
    # Echoing it back exceeds xenstored's node-size quota for a domU: the
    # server says ENOSPC to the write (sent without waiting), xvif reports
    # the typed error with its path and carries on.
    wait_console(xen, off, r"xenstore: data/xvif-pong: xenstore error ENOSPC \(sent without waiting\)")
    xen.sh("xenstore-write %s/data/xvif-ping \"$(printf 'a\\001\\377b')\"" % home, check=True)
    xen.sh("xenstore-write %s/data/xvif-ping still-alive" % home, check=True)
    wait_console(xen, off, r"data/xvif-ping = 'still-alive'")
    rc, out = xen.sh("xl list xvif", check=True)
    assert "xvif" in out
    assert "CRASH" not in console_since(xen, off) and "PANIC" not in console_since(xen, off)


def test_xl_shutdown_is_clean_and_quick(xen, xvif):
    off, _ = xvif
    t0 = time.time()
    rc, out = xen.sh("timeout 60 xl shutdown -w xvif", timeout=90)
    secs = time.time() - t0
    xen.timing("xl shutdown -w xvif", secs)
    assert rc == 0, out
    assert "has been shut down, reason code 0" in out, out   # 0 = poweroff, not crash
    text = wait_console(xen, off, r"shutdown requested \(poweroff\): powering off")
    assert "CRASH" not in text
    deadline = time.time() + 30
    while domid(xen) is not None:
        assert time.time() < deadline, "xvif still listed after shutdown"
        time.sleep(1)


def test_destroy_then_restart(xen, xvif):
    xen.sh("xl destroy xvif", timeout=60, check=True)
    assert domid(xen) is None
    off, text, secs = create(xen, "")
    xen.timing("xvif re-create-to-ready", secs)
    m = re.search(r"xen: domid (\d+) name 'xvif'", text)
    assert m and int(m.group(1)) == domid(xen), text
    xen.sh("xl destroy xvif", timeout=60, check=True)
    assert domid(xen) is None


@pytest.mark.parametrize("kind,headline", [
    ("fault", r"!!! xvif CRASH: page fault \(#PF\) \(vector 14\)"),
    ("stack", r"!!! xvif CRASH: double fault \(#DF\) \(vector 8\)"),
    ("panic", r"!!! xvif PANIC: panicked at[\s\S]*selftest: requested panic"),
])
def test_crash_is_reported_on_the_pv_console(xen, kind, headline):
    """A crash is never silent: the report reaches the PV console (what
    `xl console xvif` shows) with its backtrace, and Xen sees a crash
    (on_crash="preserve" keeps the domain, state 'c')."""
    if domid(xen) is not None:
        xen.sh("xl destroy xvif", timeout=60)
    off = console_size(xen)
    xl_create(xen, "/guests/xvif.cfg 'extra=\"selftest=%s\"'" % kind, "xvif")
    text = wait_console(xen, off, r"xvif: stopped after (crash|panic)", timeout=90)
    assert re.search(headline, text), text
    assert "backtrace (frame pointers):" in text, text
    # Crashed, not powered off: state 'c' in xl list.
    deadline = time.time() + 30
    while True:
        rc, out = xen.sh("xl list xvif", quiet=True)
        f = out.strip().splitlines()[-1].split()
        if rc == 0 and f[0] == "xvif" and "c" in f[4]:
            break
        assert time.time() < deadline, "xvif not in the crashed state: %s" % out
        time.sleep(1)
    xen.sh("xl destroy xvif", timeout=60, check=True)
