"""DDP through torchrun (gloo on CPU): ranks stay identical, and a stopped DDP run resumes exactly."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

WORKER = textwrap.dedent(
    """
    import sys
    import torch

    torch.set_num_threads(1)
    from xpath.segmentation.training.config import load_config
    from xpath.segmentation.training.trainer import Trainer

    config, out, resume, max_steps = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
    trainer = Trainer(load_config(config), out_dir=out, progress=False)
    try:
        trainer.fit(resume=resume, max_steps=max_steps)
        state = {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}
        torch.save(state, f"{out}/weights_rank{trainer.dist.rank}_step{trainer.step}.pt")
    finally:
        trainer.close()
    """
)

CONFIG = """\
model: xpath_tiny
seed: 3
data:
  sources: [{dataset: consep, limit: 2}]
  tile_size: 64
  prompts_per_image: 2
  max_negatives: 1
optim: {lr: 2.0e-3, warmup_steps: 1, batch_size: 1, accumulate: 2}
train: {steps: 4, ckpt_every: 2, log_every: 1}
"""


def _torchrun(tmp_path, out, *, resume: bool, max_steps: int) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(tmp_path / "worker.py"), str(tmp_path / "c.yaml"), str(out), "1" if resume else "0", str(max_steps)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


@pytest.mark.slow
def test_torchrun_two_ranks_identical_and_resume_exact(shared_data, tmp_path):
    (tmp_path / "worker.py").write_text(WORKER)
    (tmp_path / "c.yaml").write_text(CONFIG)
    full, part = tmp_path / "full", tmp_path / "part"
    _torchrun(tmp_path, full, resume=False, max_steps=4)
    _torchrun(tmp_path, part, resume=False, max_steps=2)  # stop half-way ...
    _torchrun(tmp_path, part, resume=True, max_steps=4)  # ... and resume from its checkpoint

    load = lambda p: torch.load(p, weights_only=True)
    r0, r1 = load(full / "weights_rank0_step4.pt"), load(full / "weights_rank1_step4.pt")
    init = load(part / "weights_rank0_step2.pt")
    moved = 0
    for k, v in r0.items():
        assert torch.equal(v, r1[k]), f"ranks differ at {k}"
        assert torch.isfinite(v.float()).all(), k
        moved += int(v.is_floating_point() and not torch.equal(v, init[k]))
    assert moved > 10  # steps 3-4 changed the weights
    for rank in (0, 1):
        resumed = load(part / f"weights_rank{rank}_step4.pt")
        for k, v in r0.items():
            torch.testing.assert_close(resumed[k], v, rtol=0, atol=1e-6, msg=k)
    state = torch.load(full / "checkpoints/step_0000004/state.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and state["step"] == 4
