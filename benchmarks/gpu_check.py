"""GPU readiness: bf16 inference tiles/s, training steps/s and MFU, and a 2-process DDP run.

Driven by ``benchmarks/gpu_check.sh`` (``make gpu-check``), one part per call::

    python benchmarks/gpu_check.py inference --models xpath_small xpath_large --sizes 512 1024
    python benchmarks/gpu_check.py train --model xpath_large --size 1024 --batch 4
    torchrun --standalone --nproc_per_node=2 benchmarks/gpu_check.py ddp --backend nccl

``--cpu`` runs the same code tiny (xpath_tiny, 64 px, float32, gloo) so the test suite keeps
it working where no GPU is present. Every line of results starts with ``RESULT`` and is
JSON, so the shell script and the test can read them.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

# Dense bf16 tensor-core peak per GPU (TFLOP/s), for the model FLOPs utilisation.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0,
                    "RTX 4090": 165.0, "V100": 125.0}


def result(**fields) -> None:
    print("RESULT " + json.dumps(fields), flush=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        import contextlib

        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _model(name: str, device: torch.device):
    from xpath.segmentation import create_model

    # no pretrained downloads either way: encoders are built from the registry packages or at random
    return create_model(name, device=device)


def _timed_loop(step, device: torch.device, *, seconds: float, min_iters: int, warmup: int) -> tuple[int, float]:
    """Run ``step`` for about ``seconds`` (at least ``min_iters`` times) after ``warmup`` calls; (iters, wall s)."""
    for _ in range(warmup):
        step()
    _sync(device)
    n, t0 = 0, time.perf_counter()
    while n < min_iters or time.perf_counter() - t0 < seconds:
        step()
        n += 1
        _sync(device)
    return n, time.perf_counter() - t0


def inference(args, device: torch.device, dtype) -> None:
    """Tiles/s of encode + decode of three prompts, per model and tile size."""
    prompts = ["nuclei", "lymphocytes", "tumor nuclei"]
    for name in args.models:
        model = _model(name, device).eval()
        for size in args.sizes:
            x = model.preprocess(np.random.default_rng(0).integers(0, 256, (args.batch, size, size, 3), np.uint8))

            def step(model=model, x=x):
                with torch.inference_mode(), _autocast(device, dtype):
                    model.decode(model.encode_image(x), prompts, all_candidates=False)

            n, wall = _timed_loop(step, device, seconds=args.seconds, min_iters=2, warmup=1)
            result(part="inference", model=name, size=size, batch=args.batch, dtype=str(dtype), device=str(device),
                   tiles_per_s=n * args.batch / wall)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _targets(batch: int, prompts: int, size: int, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    masks = (torch.rand(batch, prompts, size, size, generator=g) > 0.7).float()
    return {k: v.to(device) for k, v in {
        "masks": masks, "distance": masks * 0.5, "present": torch.ones(batch, prompts),
        "prompt_valid": torch.ones(batch, prompts, dtype=torch.bool),
        "has_instances": torch.ones(batch, prompts, dtype=torch.bool)}.items()}


def _train_step_fn(model, args, device: torch.device, dtype):
    from xpath.segmentation.training.losses import segmentation_loss

    prompts = ["nuclei-level nucleus in colon pathology", "tissue-level gland in colon pathology"]
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    targets = _targets(args.batch, len(prompts), args.size, device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05)

    def step():
        opt.zero_grad(set_to_none=True)
        with _autocast(device, dtype):
            out = model(x, prompts)
            loss, _ = segmentation_loss(out, targets)
        loss.backward()
        opt.step()
        return loss

    return step, x, prompts, targets


def _flops_per_step(model, x, prompts, targets, device, dtype) -> float:
    """Forward + backward FLOPs of one step, counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    from xpath.segmentation.training.losses import segmentation_loss

    counter = FlopCounterMode(display=False)
    with counter, _autocast(device, dtype):
        loss, _ = segmentation_loss(model(x, prompts), targets)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def train(args, device: torch.device, dtype) -> None:
    """Training steps/s of ``args.model`` and its model FLOPs utilisation against the GPU's bf16 peak."""
    model = _model(args.model, device).train()
    step, x, prompts, targets = _train_step_fn(model, args, device, dtype)
    flops = _flops_per_step(model, x, prompts, targets, device, dtype)
    n, wall = _timed_loop(step, device, seconds=args.seconds, min_iters=2, warmup=1)
    steps_s = n / wall
    peak = args.peak_tflops
    if peak is None and device.type == "cuda":
        gpu = torch.cuda.get_device_name(device)
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in gpu), None)
    mfu = flops * steps_s / (peak * 1e12) if peak else float("nan")
    result(part="train", model=args.model, size=args.size, batch=args.batch, dtype=str(dtype), device=str(device),
           steps_per_s=steps_s, tflop_per_step=flops / 1e12, peak_tflops=peak, mfu=mfu)


def ddp(args, device: torch.device, dtype) -> None:
    """DDP steps under torchrun: gradients all-reduced, weights identical on every rank afterwards."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group(backend=args.backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
            torch.cuda.set_device(device)
        torch.manual_seed(0)
        model = _model(args.model, device).train()
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                      find_unused_parameters=True)
        torch.manual_seed(1 + rank)  # different data per rank
        step, *_ = _train_step_fn(net, args, device, dtype)
        n, wall = _timed_loop(step, device, seconds=args.seconds, min_iters=args.steps, warmup=1)
        flat = torch.cat([p.detach().float().flatten() for p in model.parameters() if p.requires_grad])
        digest = torch.stack([flat.sum(), (flat * flat).sum()])
        gathered = [torch.zeros_like(digest) for _ in range(world)]
        dist.all_gather(gathered, digest)
        same = all(torch.allclose(g, gathered[0], rtol=1e-6, atol=1e-6) for g in gathered)
        if rank == 0:
            result(part="ddp", backend=args.backend, world_size=world, model=args.model, size=args.size,
                   steps=n, steps_per_s=n / wall, ranks_identical=bool(same), device=str(device))
    finally:
        dist.destroy_process_group()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["inference", "train", "ddp"])
    parser.add_argument("--cpu", action="store_true", help="tiny CPU mode (xpath_tiny, 64 px, float32, gloo)")
    parser.add_argument("--models", nargs="+", default=["xpath_small", "xpath_large"])
    parser.add_argument("--model", default="xpath_large")
    parser.add_argument("--sizes", nargs="+", type=int, default=[512, 1024])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5, help="DDP: at least this many steps")
    parser.add_argument("--seconds", type=float, default=20.0, help="timing window per measurement")
    parser.add_argument("--backend", default="nccl")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's bf16 peak, if not in the table")
    args = parser.parse_args(argv)
    if args.cpu:
        device, dtype = torch.device("cpu"), None
        args.models, args.model, args.sizes, args.size = ["xpath_tiny"], "xpath_tiny", [64], 64
        args.batch, args.steps, args.seconds, args.backend = 1, 2, 0.0, "gloo"
        torch.set_num_threads(1)
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run with --cpu for the tiny CPU mode")
        device, dtype = torch.device("cuda"), torch.bfloat16
        torch.backends.cuda.matmul.allow_tf32 = True
    {"inference": inference, "train": train, "ddp": ddp}[args.part](args, device, dtype)


if __name__ == "__main__":
    main()
