"""pytest glue for the Xen-in-QEMU tests: one Xen boot per session, and the
Xen / dom0 / guest console tails attached to every failing test's report."""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from xenvm import XenVM, repo_file  # noqa: E402

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
