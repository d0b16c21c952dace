"""pytest glue for the Xen-in-QEMU tests: one Xen boot per session, and the
Xen / dom0 / guest console tails attached to every failing test's report."""
import os
import re
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from xenvm import XenVM, repo_file  # noqa: E402
from guests import crash_lines, scan_logs  # noqa: E402

XEN_CONFIG = repo_file("xen-config")


def guest_files():
    """Files placed in dom0's /guests/: the xl configs from xen-config/ and,
    if $XVIF_ELF is set, that ELF as /guests/xvif.elf."""
    files = []
    if os.path.isdir(XEN_CONFIG):
        for f in sorted(os.listdir(XEN_CONFIG)):
            if f.endswith(".cfg"):
                files.append(os.path.join(XEN_CONFIG, f))
    elf = os.environ.get("XVIF_ELF")
    if elf:
        if not os.path.isfile(elf):
            raise FileNotFoundError("XVIF_ELF=%s does not exist" % elf)
        files.append((elf, "xvif.elf"))
    return files


@pytest.fixture(scope="session")
def xen():
    """A booted Xen + dom0 shared by all tests of the session."""
    vm = XenVM(guest_files=guest_files())
    vm.auto_diagnostics = False    # attached to the failing test's report instead
    vm.boot()
    try:
        yield vm
        if os.environ.get("XVIF_XEN_DIAG") == "1":     # on request (see with -s)
            vm.print_diagnostics("XVIF_XEN_DIAG=1", force=True)
    finally:
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
    found += ["serial: " + l for l in crash_lines(vm.serial_since(start))]
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
