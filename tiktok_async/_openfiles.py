"""Room for sockets under the process's open-file limit (one copy of the rule).

Every request in flight holds a socket, and a socket is an open file. The soft limit is
often 1,024 while the hard limit allows far more: `make_room(n)` raises the soft limit
(never the hard one) so that `n` sockets fit beside `SPARE_FILES` for the rest of the
process, and says how many fit.
"""

from __future__ import annotations

import sys

__all__ = ["SPARE_FILES", "make_room"]

#: Files kept free beside the sockets (the process's own files, the event loop, logs).
SPARE_FILES = 256


def make_room(sockets: int) -> int:
    """Raise the soft open-file limit for `sockets` more if the hard limit allows; the
    number of sockets that fit now (`sockets`, or fewer when the hard limit stops it)."""
    if sys.platform == "win32":  # pragma: no cover - no such limit to raise there
        return sockets
    import resource

    needed = sockets + SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return sockets
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return max(1, min(sockets, target - SPARE_FILES))
