"""`make_room`: the soft open-file limit raised to fit the sockets, never the hard one.

Run in a child process so the test process's own limits stay as they are."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no open-file rlimit")

CHILD = """
import resource, sys
from tiktok_async._openfiles import SPARE_FILES, make_room
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (300, hard))
fits = make_room(int(sys.argv[1]))
print(fits, resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard, SPARE_FILES)
"""


def room(sockets: int) -> tuple[int, int, int, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(sockets)], capture_output=True,
                         text=True, check=True).stdout.split()
    fits, soft, hard, spare = (int(value) for value in out)
    return fits, soft, hard, spare


def test_small_needs_leave_the_limit_alone() -> None:
    fits, soft, _, _ = room(10)
    assert (fits, soft) == (10, 300)


def test_the_soft_limit_is_raised_to_fit() -> None:
    fits, soft, hard, spare = room(2000)
    if hard < 2000 + spare:
        pytest.skip(f"the hard open-file limit here is {hard}")
    assert (fits, soft) == (2000, 2000 + spare)


def test_the_hard_limit_caps_the_room() -> None:
    _, _, hard, spare = room(10)
    if hard > 10**7:
        pytest.skip(f"the hard open-file limit here is {hard}: nothing to cap")
    fits, soft, _, _ = room(hard * 2)
    assert soft == hard
    assert fits == hard - spare
