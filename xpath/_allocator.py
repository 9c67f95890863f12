"""Freed memory kept in the process (glibc): large torch tensors are not page-faulted again on every batch.

glibc's ``malloc`` serves every allocation above its mmap threshold (32 MB at most) from a fresh
``mmap`` and unmaps it on ``free``. An encoder batch of four 512-px tiles allocates activations of
about 100 MB each, so every batch made the kernel map, fault and zero them again: on this project's
2-core CPU, 3–4× the page faults and about a quarter of the encoder's time.
:func:`keep_freed_memory` turns ``mmap`` off for ``malloc`` (``M_MMAP_MAX`` 0) and lets the heap keep
up to 512 MB of what is freed (``M_TRIM_THRESHOLD``), so the next batch reuses the same pages. The
cost is memory held: on the sample slide (``benchmarks/slide_throughput.py``, medians of 3 runs) the
wall time fell from 24.4 s to 20.3–21.7 s and the peak RSS rose from 1.40 to 1.67 GB. One process
analysing the sample slide 7 times over (as ``xpath cohort`` runs serially) reached 1.51, 1.59, 1.62,
1.66, 1.67, 1.67 and 1.72 GB; with glibc's defaults 1.14, 1.20, 1.22 after 3.

That is process-wide, so the library does not do it on import: the command line (``xpath ...``,
one process per job) calls it; a notebook or a long-lived service may call ``xpath.keep_freed_memory()``
before a slide job, or set the same in the environment before Python starts
(``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=536870912``; PyTorch's CPU performance notes suggest
jemalloc or tcmalloc for the same reason).
``benchmarks/slide_throughput.py --allocator`` measures both.
"""

from __future__ import annotations

import ctypes
import platform

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1  # glibc malloc.h
_M_MMAP_MAX = -4
_TRIM_THRESHOLD = 512 * 2**20  # bytes of free heap kept at its top before it is handed back


def keep_freed_memory() -> bool:
    """Keep freed memory in this process's heap (see the module docstring); ``True`` where applied.

    Returns ``False`` and changes nothing outside glibc (macOS, musl, Windows).

    Examples
    --------
    >>> keep_freed_memory() in (True, False)
    True
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
