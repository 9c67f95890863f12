"""Inference benchmark: prompt decoding on cached features, tiles/s, extra prompts, peak memory.

Run (CPU, about 3–4 minutes with xpath_small on 2 cores)::

    .venv/bin/python benchmarks/segmentation_inference.py            # xpath_small
    .venv/bin/python benchmarks/segmentation_inference.py --model xpath_tiny --sizes 1024 2048

Prints, with medians over ``--repeats`` runs:

1. the cost of decoding a second prompt on a cached image relative to the first call
   (``set_image`` + ``predict``), goal ≤ 15 %;
2. tiles/s of the full pipeline (encode + decode + blending + instances) at the model's tile
   size, side by side with the image encoder alone (the named baseline) in the same process;
3. the marginal cost of each extra prompt on a cached image;
4. peak memory of a segmentation of square images of growing size, each in a fresh
   process: ``ru_maxrss`` and the numpy peak from ``tracemalloc``, next to the size of the
   output arrays — the part beyond the outputs must not grow with the image — with panels
   (the default) and without (baseline: rows streamed only, buffers as wide as the image).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time

import numpy as np
from _timing import median_times, timed


def _image(size: int, seed: int = 0) -> np.ndarray:
    from xpath.datasets import synthetic_tissue

    tile = synthetic_tissue(seed, size=min(size, 1024), mpp=0.5)
    reps = -(-size // tile.image.shape[0])
    return np.tile(tile.image, (reps, reps, 1))[:size, :size].copy()


def _trained_model(model_name: str):
    """The shipped weights of ``model_name`` when xpath has them (realistic maps for the watershed), else fresh."""
    from xpath.segmentation import create_model, default_checkpoint

    checkpoint = "default" if default_checkpoint(model_name) is not None else None
    print(f"   model: {model_name}, weights: {'shipped checkpoint' if checkpoint else 'untrained decoder'}")
    return create_model(model_name, checkpoint=checkpoint, device="cpu")


def bench_prompts(model_name: str, repeats: int) -> None:
    import torch

    from xpath.segmentation import TextPromptPredictor

    torch.manual_seed(0)
    model = _trained_model(model_name)
    t = int(model.config.image_size)
    img = _image(t)
    pred = TextPromptPredictor(model)
    pred.set_image(img)  # warm-up (allocations, text encoder)
    pred.predict(["nuclei-level warm-up in unspecified pathology"])
    counter = iter(range(10_000))

    def first(instances: bool, fresh: bool) -> None:
        pred.set_image(img)
        pred.predict([f"nuclei variant {next(counter)}" if fresh else "nuclei"], instances=instances)

    def second(instances: bool, fresh: bool) -> None:
        pred.predict([f"stroma variant {next(counter)}" if fresh else "stroma"], instances=instances)

    pred.predict(["nuclei", "stroma"])  # the text encoder caches these two
    print(f"\n== decoding on a cached image ({model_name}, one {t}x{t} tile, {torch.get_num_threads()} threads)")
    print("   first call = set_image + predict(1 prompt); second = predict(another prompt); interleaved pairs;")
    print("   ratios are medians over pairs, of wall-clock and of this process's CPU time")
    print(f"{'case':<40}{'first s':>9}{'second s':>10}{'wall ratio':>12}{'CPU ratio':>11}")
    cases = (("semantic, prompt text seen before", False, False),
             ("semantic, new prompt text", False, True),
             ("with instances, prompt text seen before", True, False))
    for label, instances, fresh in cases:
        pairs = [(timed(lambda: first(instances, fresh)), timed(lambda: second(instances, fresh)))  # noqa: B023
                 for _ in range(repeats)]
        t1 = statistics.median(a[0] for a, _ in pairs)
        t2 = statistics.median(b[0] for _, b in pairs)
        wall = statistics.median(b[0] / a[0] for a, b in pairs)
        cpu = statistics.median(b[1] / a[1] for a, b in pairs)
        print(f"{label:<40}{t1:>9.3f}{t2:>10.3f}{wall:>12.1%}{cpu:>11.1%}")

    print(f"\n== marginal cost of extra prompts on a cached image ({model_name}, semantic only, text seen before)")
    prompts = ["nuclei", "stroma", "lymphocytes", "tumour", "glands", "necrosis", "epithelial nuclei", "fibroblasts"]
    pred.set_image(img)
    pred.predict(prompts, instances=False)  # the text encoder caches all eight
    set_wall, set_cpu = median_times(lambda: pred.set_image(img), repeats)
    print(f"{'prompts':>8}{'wall s':>9}{'CPU s':>8}{'CPU per extra prompt':>22}{'CPU vs set_image':>18}")
    base = None
    for n in (1, 2, 4, 8):
        def run(n: int = n) -> None:
            pred.predict(prompts[:n], instances=False)

        wall, cpu = median_times(run, repeats)
        base = cpu if base is None else base
        extra = "" if n == 1 else f"{(cpu - base) / (n - 1):.3f}"
        print(f"{n:>8}{wall:>9.3f}{cpu:>8.3f}{extra:>22}{cpu / set_cpu:>18.1%}")
    print(f"   set_image (encoding the tile): wall {set_wall:.3f} s, CPU {set_cpu:.3f} s")


def bench_throughput(model_name: str, repeats: int) -> None:
    import torch

    from xpath.segmentation import segment, tile_starts

    torch.manual_seed(0)
    model = _trained_model(model_name).eval()
    t = int(model.config.image_size)
    size = 2 * t + t // 2
    img = _image(size)
    n_tiles = len(tile_starts(size, t, t // 8)) ** 2
    batch = np.stack([img[:t, :t]] * 4)

    def encoder_only():
        with torch.inference_mode():
            model.encode_image(model.preprocess(batch))

    def encoder_backbone():
        with torch.inference_mode():
            model.image_encoder(model.preprocess(batch))

    def full():
        segment(img, ["nuclei"], model=model, progress=False, batch_size=4)

    encoder_backbone()
    full()  # warm-up
    tb, cb = median_times(encoder_backbone, repeats)
    te, ce = median_times(encoder_only, repeats)
    tf, cf = median_times(full, repeats)
    print(f"\n== CPU throughput, {model_name}, {t} px tiles, {torch.get_num_threads()} threads")
    print("   (CPU s/tile: this process's CPU time, steadier than wall-clock on a shared machine)")
    print(f"{'run':<52}{'tiles/s':>9}{'vs backbone':>13}{'CPU s/tile':>12}")
    print(f"{'image backbone alone (baseline), batch 4':<52}{4 / tb:>9.2f}{1.0:>13.2f}{cb / 4:>12.3f}")
    print(f"{'encode_image (backbone + pixel decoder), batch 4':<52}{4 / te:>9.2f}{tb / te:>13.2f}{ce / 4:>12.3f}")
    label = f"segment(), 1 nuclei prompt, {size}x{size} = {n_tiles} tiles"
    print(f"{label:<52}{n_tiles / tf:>9.2f}{(n_tiles / tf) / (4 / tb):>13.2f}{cf / n_tiles:>12.3f}")

    # Panels (bounded memory) re-run the tile column on each seam: their price on a wide image.
    from xpath.segmentation import TextPromptPredictor

    wide = np.tile(img, (1, 4, 1))[: t + t // 2, : 8 * t]
    n_wide = len(tile_starts(wide.shape[0], t, t // 8)) * len(tile_starts(wide.shape[1], t, t // 8))
    runs = {}
    for name, panel_tiles in (("rows only (panel_tiles=None, baseline)", None), ("panels of 4 tile columns", 4)):
        pred = TextPromptPredictor(model, cache_tiles=0, panel_tiles=panel_tiles)
        runs[name] = median_times(lambda pred=pred: pred.set_image(wide).predict(["nuclei"]), repeats)
    bc = next(iter(runs.values()))[1]  # the baseline's CPU seconds
    print(f"\n   a {wide.shape[0]}x{wide.shape[1]} image ({n_wide} tiles), segment-equivalent predict(['nuclei']):")
    print(f"{'run':<52}{'wall s':>9}{'CPU s':>9}{'CPU vs baseline':>17}")
    for name, (w, c) in runs.items():
        print(f"{name:<52}{w:>9.2f}{c:>9.2f}{c / bc:>17.2f}")


def _memory_child(model_name: str, size: int, panel_tiles: int | None) -> None:
    """Run in a fresh process: peak memory of one segmentation of a size×size image (buffers do not depend on
    the weights: a fresh model)."""
    import resource
    import tracemalloc

    import torch

    from xpath.segmentation import TextPromptPredictor, create_model

    torch.manual_seed(0)
    model = create_model(model_name, device="cpu")
    img = _image(size)
    t = int(model.config.image_size)
    predictor = TextPromptPredictor(model, cache_tiles=0, panel_tiles=panel_tiles)  # as segment() runs it
    # Warm-up on a 2x2-tile image: torch's per-batch buffers reach their size before the measurement.
    predictor.set_image(img[: 2 * t - t // 4, : 2 * t - t // 4]).predict(["nuclei", "stroma"])
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    t0 = time.perf_counter()
    seg = predictor.set_image(img).predict(["nuclei", "stroma"])
    wall = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outputs = sum(a.nbytes for a in seg.semantic.values()) + sum(a.nbytes for a in seg.instances.values())
    print(json.dumps({"size": size, "rss_before_mb": rss0 / 1024, "rss_peak_mb": rss1 / 1024,
                      "numpy_peak_mb": peak / 2**20, "outputs_mb": outputs / 2**20, "seconds": wall}))


def bench_memory(model_name: str, sizes: list[int]) -> None:
    print(f"\n== peak memory of predict(['nuclei', 'stroma']) on a size x size image ({model_name}); fresh process")
    print("   per run. 'panels' = the default (panels of 4 tile columns); baseline = panel_tiles=None (one panel")
    print("   as wide as the image, rows streamed only). 'beyond outputs' = numpy peak - output arrays.")
    print(f"{'size':>6}{'outputs MB':>12}{'beyond outputs MB':>19}{'  baseline':>11}{'ratio':>7}"
          f"{'RSS growth MB':>15}{'  baseline':>11}{'seconds':>9}{'  baseline':>11}")
    for size in sizes:
        runs = {}
        for panel_tiles in ("4", "none"):
            res = subprocess.run([sys.executable, __file__, "--child-memory", str(size), "--model", model_name,
                                  "--panel-tiles", panel_tiles], capture_output=True, text=True, check=True)
            runs[panel_tiles] = json.loads(res.stdout.strip().splitlines()[-1])
        p, b = runs["4"], runs["none"]
        beyond_p, beyond_b = p["numpy_peak_mb"] - p["outputs_mb"], b["numpy_peak_mb"] - b["outputs_mb"]
        print(f"{size:>6}{p['outputs_mb']:>12.1f}{beyond_p:>19.1f}{beyond_b:>11.1f}{beyond_p / beyond_b:>7.2f}"
              f"{p['rss_peak_mb'] - p['rss_before_mb']:>15.0f}{b['rss_peak_mb'] - b['rss_before_mb']:>11.0f}"
              f"{p['seconds']:>9.1f}{b['seconds']:>11.1f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="xpath_small")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="*", default=[1024, 2048, 4096])
    parser.add_argument("--skip", nargs="*", default=[], choices=["prompts", "throughput", "memory"])
    parser.add_argument("--child-memory", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--panel-tiles", default="4", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.child_memory:
        _memory_child(args.model, args.child_memory, None if args.panel_tiles == "none" else int(args.panel_tiles))
        return
    if "prompts" not in args.skip:
        bench_prompts(args.model, args.repeats)
    if "throughput" not in args.skip:
        bench_throughput(args.model, args.repeats)
    if "memory" not in args.skip:
        bench_memory(args.model, args.sizes)


if __name__ == "__main__":
    main()
