"""The GPU readiness script's tiny CPU mode runs end to end, so the script cannot rot without a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_cpu_mode_prints_every_figure():
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=400, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    results = [json.loads(line[len("RESULT "):]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    parts = {r["part"]: r for r in results}
    assert set(parts) == {"inference", "train", "ddp"}
    assert parts["inference"]["tiles_per_s"] > 0 and parts["inference"]["model"] == "xpath_tiny"
    train = parts["train"]
    assert train["steps_per_s"] > 0 and train["tflop_per_step"] > 0  # FLOPs counted, MFU needs a known peak
    ddp = parts["ddp"]
    assert ddp["world_size"] == 2 and ddp["backend"] == "gloo" and ddp["ranks_identical"] and ddp["steps"] >= 2
