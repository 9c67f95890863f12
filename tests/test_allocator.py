"""keep_freed_memory: large buffers freed and allocated again reuse their pages instead of faulting new ones."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

_CHURN = """
import json, resource, sys
import numpy as np
if sys.argv[1] == "kept":
    from xpath._allocator import keep_freed_memory
    assert keep_freed_memory()
np.ones(64 * 2**20, np.uint8)  # one first allocation of the size, outside the count
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    a = np.ones(64 * 2**20, np.uint8)  # 64 MB: above glibc's largest mmap threshold
    del a
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before))
"""


def _page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _CHURN, mode], capture_output=True, text=True, check=True).stdout
    return int(json.loads(out.strip().splitlines()[-1]))


def test_kept_freed_memory_stops_refaulting_large_buffers():
    from xpath._allocator import keep_freed_memory

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        assert keep_freed_memory() is False  # mallopt is glibc's: elsewhere nothing is changed
        return
    default, kept = _page_faults("glibc"), _page_faults("kept")
    assert default >= 20 * 16  # glibc maps and faults every 64 MB buffer again (>= 32 faults of 2 MB pages each)
    assert kept * 10 < default  # the same pages serve every allocation after the first
    assert keep_freed_memory() is True
