"""Clock quality: the Pi has no real-time clock, so wall time is wrong until NTP syncs."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_TIME_ERROR = 5  # adjtimex(2): clock not synchronised


class _Timex(ctypes.Structure):
    # struct timex starts with `unsigned int modes`; the kernel only reads `modes` (0 = read
    # only) and fills the rest, so a generous buffer after it is enough.
    _fields_ = [("modes", ctypes.c_uint), ("_rest", ctypes.c_byte * 512)]


def clock_synchronised() -> bool | None:
    """Return whether the kernel considers the wall clock NTP-synchronised.

    ``None`` when that cannot be known (not Linux, or adjtimex unavailable).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        timex = _Timex()
        state = int(libc.adjtimex(ctypes.byref(timex)))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != _TIME_ERROR
