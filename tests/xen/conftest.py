"""pytest glue for the Xen-in-QEMU tests: one Xen boot per session, and the
Xen / dom0 / guest console tails attached to every failing test's report."""
import os
import re
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from xenvm import XenVM, repo_file  # noqa: E402
from guests import crash_lines, nested_triple_faults, scan_logs  # noqa: E402

XEN_CONFIG = repo_file("xen-config")
NESTED_REPRO = "tests/xen/nested-repro/README.md"
# The session's Xen, once booted (the rerun hook reads its serial log).
_VM = None


def guest_files():
    """Files placed in dom0's /guests/: the xl configs and scripts from
    xen-config/ and, if $XVIF_ELF is set, that ELF as /guests/xvif.elf."""
    files = []
    if os.path.isdir(XEN_CONFIG):
        for f in sorted(os.listdir(XEN_CONFIG)):
            if f.endswith((".cfg", ".sh")):
                files.append(os.path.join(XEN_CONFIG, f))
    elf = os.environ.get("XVIF_ELF")
    if elf:
        if not os.path.isfile(elf):
            raise FileNotFoundError("XVIF_ELF=%s does not exist" % elf)
        files.append((elf, "xvif.elf"))
    return files


def pytest_configure(config):
    config.addinivalue_line("markers", "outer_net: boot Xen with the outer NIC (XenVM(outer_net=True))")


@pytest.fixture(scope="session")
def xen(request):
    """A booted Xen + dom0 shared by all tests of the session."""
    global _VM
    # A module marked outer_net (test_hvm.py) needs the wire to a peer
    # outside Xen; sessions without one boot exactly as before.
    outer = any(item.get_closest_marker("outer_net") for item in request.session.items)
    vm = XenVM(guest_files=guest_files(), outer_net=outer)
    vm.auto_diagnostics = False    # attached to the failing test's report instead
    vm.excused = set()             # (xen timestamp, domid) of excused triple faults
    vm.boot()
    _VM = vm
    try:
        yield vm
        if os.environ.get("XVIF_XEN_DIAG") == "1":     # on request (see with -s)
            vm.print_diagnostics("XVIF_XEN_DIAG=1", force=True)
    finally:
        _VM = None
        vm.close()


@pytest.fixture(scope="module", autouse=True)
def no_crashes(request):
    """After each module of Xen tests: zero user-space crashes in dom0 and
    the guests, zero xl crashes, zero failed domain builds, zero triple
    faults. Anything found fails the module loudly with the lines."""
    if "xen" not in request.fixturenames:
        yield
        return
    vm = request.getfixturevalue("xen")
    start = vm.serial_size()
    yield
    found = list(vm.crashes)
    vm.crashes.clear()
    serial = vm.serial_since(start)
    def excused(line):     # a triple fault that caused a logged rerun
        faults = set(nested_triple_faults(line))
        return bool(faults) and faults <= vm.excused
    found += ["serial: " + l for l in crash_lines(serial) if not excused(l)]
    if vm.ready and vm.alive():
        found += scan_logs(vm, ["/var/log/xen/console/*.log", "/var/log/xen/xl-*.log"])
    def key(line):     # the same crash seen in two places counts once
        return re.sub(r"^(serial: |\S+\.log:)", "", line).strip()
    seen = getattr(vm, "crashes_reported", set())
    vm.crashes_reported = seen
    new = {}
    for line in found:
        if key(line) not in seen and key(line) not in new:
            new[key(line)] = line
    seen.update(new)
    new = list(new.values())
    if new:
        pytest.fail("%d crash line(s) during %s (zero are allowed):\n  %s" % (
            len(new), request.module.__name__, "\n  ".join(new[:40])), pytrace=False)


def _attempt(item, nextitem, excuse):
    """setup, call and teardown of `item`, like pytest's own protocol, except
    that `excuse(reports)` is asked between call and teardown; when it says
    the test runs again, teardown stops at the module (its fixtures stay up
    and repair themselves). Returns (reports, run again?)."""
    from _pytest.runner import call_and_report
    if hasattr(item, "_request") and not item._request:
        item._initrequest()
    try:
        reports = [call_and_report(item, "setup", False)]
        if reports[0].passed:
            reports.append(call_and_report(item, "call", False))
        again = excuse(reports)
        if item.session.shouldfail or item.session.shouldstop:
            nextitem = None
        reports.append(call_and_report(item, "teardown", False, nextitem=item.parent if again else nextitem))
    finally:
        if hasattr(item, "_request"):
            item._request = False
            item.funcargs = None
    return reports, again


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    """Runs a Xen test once more, and only once, when it failed and xvif
    triple-faulted meanwhile. Such a triple fault comes from the nested-SVM
    emulation, not from xvif: the reproducer in tests/xen/nested-repro (a
    guest of static assembly) gets the same one. Every rerun is written to
    the terminal, to harness.log and to the session summary; a second triple
    fault in the rerun, or any other failure, fails the test as usual."""
    if "xen" not in item.fixturenames:
        return None
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    start = _VM.serial_size() if _VM is not None else 0

    def excuse(reports):
        if _VM is None or not any(r.failed for r in reports):
            return False
        faults = [f for f in nested_triple_faults(_VM.serial_since(start)) if f not in _VM.excused]
        if not faults:
            return False
        _VM.excused.update(faults)
        first = "; ".join("%s: %s" % (r.when, r.longrepr.reprcrash.message.splitlines()[0] if hasattr(r.longrepr, "reprcrash")
                                      else str(r.longrepr)[-300:]) for r in reports if r.failed)
        msg = ("%s: xvif triple-faulted (xen time and domid: %s), the nested-SVM emulation fault that %s "
               "shows; the test runs once more. First attempt: %s" % (
                   item.nodeid, ", ".join("%s d%d" % f for f in faults), NESTED_REPRO, first[:600]))
        _VM.note("RERUN " + msg)
        RERUNS.append(msg)
        tr = item.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line("\nRERUN " + msg, yellow=True)
        return True

    reports, again = _attempt(item, nextitem, excuse)
    if again:
        reports, _ = _attempt(item, nextitem, lambda _reports: False)
    for r in reports:
        item.ihook.pytest_runtest_logreport(report=r)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


RERUNS = []


def pytest_terminal_summary(terminalreporter):
    if RERUNS:
        terminalreporter.section("Xen tests run twice after a nested-SVM triple fault of xvif")
        for m in RERUNS:
            terminalreporter.write_line(m)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when in ("call", "teardown") and rep.failed and "xen" in getattr(item, "fixturenames", ()):
        vm = item.funcargs.get("xen")
        if vm is not None:
            try:
                rep.sections.append(("xen diagnostics", vm.diagnostics()))
            except Exception as e:   # never hide the real failure
                rep.sections.append(("xen diagnostics", "(failed: %r)" % e))
