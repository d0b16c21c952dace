import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qemu  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def elf_exists():
    assert os.path.exists(qemu.ELF), "build the ELF first: make (looked for %s)" % qemu.ELF
