"""Clock quality: the Pi has no real-time clock, so wall time is wrong until NTP syncs."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Callable
from typing import Any

_TIME_ERROR = 5  # adjtimex(2): clock not synchronised


class _Timex(ctypes.Structure):
    # struct timex starts with `unsigned int modes`; the kernel only reads `modes` (0 = read
    # only) and fills the rest, so a generous buffer after it is enough.
    _fields_ = [("modes", ctypes.c_uint), ("_rest", ctypes.c_byte * 512)]


@functools.cache
def _adjtimex() -> Callable[[Any], int] | None:
    # find_library runs ldconfig in a subprocess: look libc up once, not per commit.
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.adjtimex
    except (OSError, AttributeError):
        return None


def clock_synchronised() -> bool | None:
    """Return whether the kernel considers the wall clock NTP-synchronised.

    ``None`` when that cannot be known (not Linux, or adjtimex unavailable).
    """
    if not sys.platform.startswith("linux"):
        return None
    adjtimex = _adjtimex()
    if adjtimex is None:
        return None
    timex = _Timex()
    state = int(adjtimex(ctypes.byref(timex)))
    if state < 0:
        return None
    return state != _TIME_ERROR
