"""Whole-slide throughput: seconds per mm² of tissue with every stage, against today's windowed path.

Run (CPU; 10–20 minutes on 2 shared cores)::

    .venv/bin/python benchmarks/slide_throughput.py                      # sample slide + synthetic slide
    .venv/bin/python benchmarks/slide_throughput.py --no-baseline --mpp 0.5
    .venv/bin/python benchmarks/slide_throughput.py --synthetic-size 0   # sample slide only
    .venv/bin/python benchmarks/slide_throughput.py --reference          # + AJI against predict() on the whole image
    git archive REF xpath | tar -x -C /tmp/prev                         # an earlier version of the package, then
    .venv/bin/python benchmarks/slide_throughput.py --no-baseline --previous /tmp/prev --rounds 3
    .venv/bin/python benchmarks/slide_throughput.py --no-baseline --precision auto --float32 --rounds 3  # vs float32

For each slide (the sample slide CMU-1-Small-Region, 20× at 0.499 µm/px, and a synthetic
slide of tissue islands on glass), in one process, side by side:

- ``new``: :func:`xpath.pipeline.analyze_slide` with the model (one tile grid over the
  tissue, tiles read ahead, prompt embeddings from the checkpoint);
- ``baseline``: the path before (the same model as a per-window ``segmenter`` over
  2048-px windows, each tiled by its own predictor; the text encoder loaded). On the
  synthetic slide only with ``--synthetic-baseline``;
- ``float32`` (with ``--float32``): the new path in float32, where ``new`` runs in ``--precision``
  (default float32, the library's; ``auto``: bfloat16 autocast on a CPU with AMX,
  :mod:`xpath.segmentation.inference.precision`);
- ``previous`` (with ``--previous DIR``): the new path of another version of the package (a
  source tree holding ``xpath/``), imported in this same process: the two versions' modules
  are swapped in ``sys.modules`` between runs, and with ``--rounds N`` the versions alternate
  ``N`` times (medians reported), so both see the same machine load. Every path first runs
  ``--warmup`` times (default once) unmeasured: the first run in a process compiles numba kernels.

Printed: wall and CPU seconds, s/mm² of tissue (tissue area from the tissue mask), tiles
encoded against tiles needed (model-grid tiles that touch tissue), the share of wall time
per stage (load, read, encode, decode, watershed, features, graph, writes; "stitch" is the
rest: blending, ownership, pasting), the ratio new / baseline; then the encoder-only rate
and the encoder-bound limit ``tiles needed / rate / area`` (the rate in float32 and in ``--precision``). Peak RSS is measured for each
path in a fresh process (``ru_maxrss`` is a per-process high-water mark). ``--allocator``: freed memory
kept in the process as ``xpath analyze`` runs (``kept``, the default; :mod:`xpath._allocator`) or glibc's
defaults (``glibc``); the setting is process-wide, so compare the two in two runs. Finally the
agreement of the two paths' instances (AJI per prompt) and, on objects whose pixels are
identical in both, the largest difference of their shape features.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from _timing import median_seconds

PROMPTS = ("lymphocytes", "tumor nuclei", "nuclei")
STAGES = ("load", "read", "encode", "decode", "watershed", "features", "graph", "writes")


class StageClock:
    """Wall seconds per stage, by wrapping the functions of each stage (outermost call counts)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)  # main thread
        self.background: dict[str, float] = defaultdict(float)  # other threads (the reader)
        self._local = threading.local()
        self._patches: list[tuple[object, str, object]] = []

    def wrap(self, owner, name: str, stage: str) -> None:
        fn = getattr(owner, name)
        clock = self

        def timed(*args, **kwargs):
            if getattr(clock._local, "busy", False):
                return fn(*args, **kwargs)
            clock._local.busy = True
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                clock._local.busy = False
                into = clock.seconds if threading.current_thread() is threading.main_thread() else clock.background
                into[stage] += time.perf_counter() - t0

        self._patches.append((owner, name, fn))
        setattr(owner, name, timed)

    def restore(self) -> None:
        for owner, name, fn in reversed(self._patches):
            setattr(owner, name, fn)
        self._patches.clear()


@contextmanager
def stage_clock(slide_type):
    import xpath.biomarkers as bio
    import xpath.io as xio
    import xpath.pipeline._slide as slide_mod
    import xpath.pipeline._slide_analysis as analysis_mod
    import xpath.segmentation as seg
    from xpath.io import GeoJSONWriter
    from xpath.segmentation.inference import stitching
    from xpath.segmentation.modeling import TextPromptSegmenter

    clock = StageClock()
    for owner, name, stage in [
        (seg, "load_model", "load"), (slide_type, "read_at_mpp", "read"), (slide_type, "thumbnail", "read"),
        (TextPromptSegmenter, "encode_image", "encode"), (TextPromptSegmenter, "decode", "decode"),
        (stitching, "instances_from_maps", "watershed"), (bio, "cell_table", "features"),
        (analysis_mod, "_build_graph", "graph"), (bio, "cell_spatial_stats", "graph"),
        (bio, "image_spatial_features", "graph"), (bio, "aggregate", "graph"),
        (GeoJSONWriter, "add_labels", "writes"), (GeoJSONWriter, "add_mask", "writes"), (xio, "trace_rings", "writes"),
        (GeoJSONWriter, "close", "writes"), (slide_mod._ParquetStream, "append", "writes"),
        (slide_mod._ParquetStream, "close", "writes"), (slide_mod, "write_ome_tiff", "writes"),
        (xio, "write_parquet", "writes"),
    ]:
        clock.wrap(owner, name, stage)
    try:
        yield clock
    finally:
        clock.restore()


def baseline_segmenter(net):
    """Today's slide path: the model as a per-window segmenter (each 2048-px window tiled on its own)."""
    from xpath.segmentation import TextPromptPredictor

    predictor = TextPromptPredictor(net, batch_size=4, cache_tiles=0, progress=False)

    def run(window):
        predictor.set_image(window.array, mpp=window.mpp)
        return predictor.predict(list(PROMPTS), threshold=0.5, min_area_um2=10.0)

    run.mpp, run.tile, run.predictor = float(net.config.mpp), int(net.config.image_size), predictor
    return run


def load_baseline_model():
    """The model as it loaded before the prompt cache: text encoder loaded, prompts embedded live."""
    from xpath.segmentation import default_checkpoint, load_checkpoint

    net = load_checkpoint(default_checkpoint("xpath_small"), device="cpu")
    net.text_encoder.model  # noqa: B018 - loads the encoder's weights, as every load did before
    net.text_encoder.clear_cache()
    return net


def open_slide_arg(spec: str, synthetic_size: int):
    from xpath.datasets import sample_slide_path
    from xpath.io import open_slide

    if spec == "synthetic":
        return synthetic_slide(synthetic_size)
    return open_slide(sample_slide_path() if spec == "sample" else spec)


def synthetic_slide(size: int, seed: int = 0):
    """A ``size``² slide at 0.5 µm/px (20×): synthetic tissue in three islands on glass, ~40 % tissue."""
    from xpath.datasets import synthetic_tissue
    from xpath.pipeline import ArraySlide

    tile = synthetic_tissue(seed, size=1024, mpp=0.5).image
    reps = -(-size // tile.shape[0])
    tissue = np.tile(tile, (reps, reps, 1))[:size, :size].copy()
    yy, xx = np.mgrid[:size, :size] / size
    inside = np.zeros((size, size), bool)
    for cy, cx, r in ((0.3, 0.3, 0.25), (0.7, 0.65, 0.22), (0.3, 0.8, 0.12)):
        inside |= (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    image = np.where(inside[..., None], tissue, np.uint8(242))
    return ArraySlide(image, mpp=0.5, path=f"synthetic_{size}.png")


class Versions:
    """Two versions of the package in one process: ``use("previous")`` imports ``xpath`` from another source
    tree (its modules swapped into ``sys.modules``), ``use("new")`` brings this checkout's back."""

    def __init__(self, previous: str | None) -> None:
        self.roots = {"new": None, "previous": str(Path(previous).resolve()) if previous else None}
        self.saved: dict[str, dict] = {"new": {}, "previous": {}}
        self.active = "new"
        if previous and not (Path(previous) / "xpath" / "__init__.py").exists():
            raise SystemExit(f"--previous {previous}: no xpath/__init__.py there (git archive REF xpath | tar -x -C DIR)")

    def use(self, name: str) -> None:
        if name == self.active:
            return
        import importlib

        self.saved[self.active] = {k: sys.modules.pop(k) for k in list(sys.modules) if k.split(".")[0] == "xpath"}
        if self.roots[self.active]:
            sys.path.remove(self.roots[self.active])
        if self.roots[name]:
            sys.path.insert(0, self.roots[name])
        sys.modules.update(self.saved[name])
        importlib.invalidate_caches()
        self.active = name
        import xpath

        where = Path(xpath.__file__).resolve().parent.parent
        assert self.roots[name] is None or where == Path(self.roots[name]), (name, where)


def run_path(path: str, spec: str, *, mpp, synthetic_size: int, out_dir: Path, precision: str = "float32") -> dict:
    """One analysis of the slide by ``path`` ("new", "float32", "previous" or "baseline"); seconds, stages, tiles.
    ``precision``: of the new path ("float32" runs it in float32; the other versions have their own)."""
    from xpath.pipeline import analyze_slide
    from xpath.segmentation import api

    api._named_model.cache_clear()  # every run loads the model (the encoder rate loaded it first)
    slide = open_slide_arg(spec, synthetic_size)
    with stage_clock(type(slide)) as clock:
        w0, c0 = time.perf_counter(), time.process_time()
        if path == "baseline":
            t = time.perf_counter()
            segmenter = baseline_segmenter(load_baseline_model())
            clock.seconds["load"] += time.perf_counter() - t
            res = analyze_slide(slide, list(PROMPTS), out_dir=out_dir, segmenter=segmenter, progress=False)
            encoded = segmenter.predictor.tiles_encoded
        else:  # "new" or "float32", or "previous" with the other version imported
            options = {} if path == "previous" else {"precision": "float32" if path == "float32" else precision}
            res = analyze_slide(slide, list(PROMPTS), out_dir=out_dir, mpp=mpp, progress=False, **options)
            encoded = res.segmentation.tiles_encoded
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    seg = res.segmentation
    return {"path": path, "wall": wall, "cpu": cpu, "stages": dict(clock.seconds),
            "reader_thread": dict(clock.background), "encoded": int(encoded), "cells": len(res.cells),
            "area_mm2": float(res.features["image.tissue.area_mm2"].iloc[0]), "mpp": seg.mpp,
            "masks": str(seg.files["masks"])}


def tiles_needed(spec: str, synthetic_size: int, mpp: float) -> int:
    """Model-grid tiles (512 px at ``mpp``) that touch the thumbnail's tissue mask."""
    from xpath.pipeline import tissue_mask
    from xpath.pipeline._slide_model import SlideSource, tissue_tiles

    slide = open_slide_arg(spec, synthetic_size)
    tissue = tissue_mask(slide.thumbnail(2048).array)
    src = SlideSource(slide, mpp=mpp)
    _, _, frac = tissue_tiles(tissue, slide.dimensions[0] / tissue.shape[1], src.downsample, src.shape[:2], 512, 64)
    return int((frac > 0).sum())


def encoder_rate(repeats: int, precision: str = "float32") -> float:
    """Tiles/s of the image encoder alone (xpath_small, 512-px tiles, batches of 4) in ``precision``."""
    from xpath.segmentation import load_model
    from xpath.segmentation.inference.precision import inference_context, resolve_precision

    net = load_model("xpath_small", "cpu")
    x = net.preprocess(np.random.default_rng(0).integers(0, 256, (4, 512, 512, 3), dtype=np.uint8))
    dtype = resolve_precision(precision, "cpu")

    def encode():
        with inference_context(dtype, "cpu"):
            net.encode_image(x)

    return 4 / median_seconds(encode, repeats)


def agreement(new_masks: str, base_masks: str) -> dict[str, tuple[float, float]]:
    """Per prompt: AJI of the new instances against the baseline's, and the largest shape-feature
    difference over objects whose pixels are identical in both."""
    from xpath.biomarkers import cell_table
    from xpath.io import read_ome_tiff
    from xpath.segmentation.metrics import aji

    new, meta = read_ome_tiff(new_masks)
    base, _ = read_ome_tiff(base_masks)
    out = {}
    for prompt, a, b in zip(meta["channels"], base, new):
        a, b = a.astype(np.int64), b.astype(np.int64)
        same = _identical_objects(a, b)
        diff = float("nan")
        if len(same):
            ta = cell_table(np.where(np.isin(a, same[:, 0]), a, 0), mpp=0.25, properties=("shape",)).set_index("id")
            tb = cell_table(np.where(np.isin(b, same[:, 1]), b, 0), mpp=0.25, properties=("shape",)).set_index("id")
            cols = [c for c in ta.columns if c.startswith("nucleus.shape") and c in tb.columns]
            va, vb = ta.loc[same[:, 0], cols].to_numpy(float), tb.loc[same[:, 1], cols].to_numpy(float)
            diff = float(np.nanmax(np.abs(va - vb))) if va.size else float("nan")
        out[prompt] = (aji(a, b), diff, len(same), len(np.unique(a)) - 1)
    return out


def _identical_objects(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(K, 2)`` id pairs (a, b) of objects with the very same pixels."""
    fg = (a > 0) | (b > 0)
    pairs, counts = np.unique(np.stack([a[fg], b[fg]], 1), axis=0, return_counts=True)
    area_a = np.bincount(a.ravel())
    area_b = np.bincount(b.ravel())
    ok = (pairs[:, 0] > 0) & (pairs[:, 1] > 0)
    pairs, counts = pairs[ok], counts[ok]
    same = (counts == area_a[pairs[:, 0]]) & (counts == area_b[pairs[:, 1]])
    return pairs[same]


def reference_agreement(spec: str, synthetic_size: int, mpp: float, masks: dict) -> None:
    """AJI of each path against TextPromptPredictor.predict on the whole slide image (no windows, no skipping)."""
    from xpath.io import read_ome_tiff
    from xpath.pipeline._slide_model import SlideSource
    from xpath.segmentation import TextPromptPredictor, load_model
    from xpath.segmentation.metrics import aji

    src = SlideSource(open_slide_arg(spec, synthetic_size), mpp=mpp)
    image = src.read(0, 0, src.shape[0], src.shape[1])
    predictor = TextPromptPredictor(load_model("xpath_small", "cpu"), cache_tiles=0, panel_tiles=16, mpp=mpp)
    ref = predictor.set_image(image, mpp=mpp).predict(list(PROMPTS))
    maps = {path: read_ome_tiff(m)[0] for path, m in masks.items()}
    maps = {path: m for path, m in maps.items() if m.shape[1:] == ref.instances[PROMPTS[0]].shape}  # same mpp
    for k, prompt in enumerate(PROMPTS):
        print(f"  {prompt:14s} AJI against predict() on the whole image: " + ", ".join(
            f"{path} {aji(ref.instances[prompt], maps[path][k].astype(np.int32)):.3f}" for path in maps))
    shift_floor(image, mpp)


def shift_floor(image: np.ndarray, mpp: float, shift: int = 8, size: int = 1200) -> None:
    """AJI of predict() on a crop against predict() on the same crop with the tile grid moved by ``shift`` px:
    how far two equally valid tile grids disagree (the floor for any comparison across grids)."""
    from xpath.segmentation import TextPromptPredictor, load_model
    from xpath.segmentation.metrics import aji

    h, w = image.shape[:2]
    y0, x0 = max(0, h // 2 - size // 2), max(0, w // 2 - size // 2)
    crop = image[y0:y0 + size, x0:x0 + size]
    predictor = TextPromptPredictor(load_model("xpath_small", "cpu"), cache_tiles=0, mpp=mpp)
    a = predictor.set_image(crop, mpp=mpp).predict(list(PROMPTS))
    b = predictor.set_image(crop[shift:, shift:], mpp=mpp).predict(list(PROMPTS))
    print(f"  grid moved by {shift} px on a {size}² crop, predict() against itself: " + ", ".join(
        f"{p} AJI {aji(a.instances[p][shift:, shift:], b.instances[p]):.3f}" for p in PROMPTS))


def peak_rss(path: str, spec: str, mpp, synthetic_size: int, allocator: str, previous: str | None = None,
             precision: str = "float32") -> float:
    """Peak RSS (GB) of one analysis in a fresh process (``previous``: the other version's tree, for that path)."""
    cmd = [sys.executable, __file__, "--child", path, "--slide", spec, "--synthetic-size", str(synthetic_size),
           "--allocator", allocator, "--precision", precision]
    if mpp is not None:
        cmd += ["--mpp", str(mpp)]
    if path == "previous":
        cmd += ["--previous", previous]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["rss_gb"]


def report(spec: str, runs: dict, needed: int, rss: dict) -> None:
    area = runs["new"]["area_mm2"]
    print(f"\n== {spec}: tissue {area:.3f} mm² (tissue mask), prompts {list(PROMPTS)}")
    print(f"{'path':9s} {'wall s':>7s} {'cpu s':>7s} {'s/mm²':>7s} {'encoded':>8s} {'needed':>7s} {'ratio':>6s} "
          f"{'RSS GB':>7s} {'cells':>6s}  " + " ".join(f"{s:>9s}" for s in (*STAGES, "stitch")))
    for name, r in runs.items():
        st = r["stages"]
        rest = r["wall"] - sum(st.get(s, 0.0) for s in STAGES)
        shares = " ".join(f"{100 * st.get(s, 0.0) / r['wall']:8.1f}%" for s in STAGES) + f" {100 * rest / r['wall']:8.1f}%"
        print(f"{name:9s} {r['wall']:7.1f} {r['cpu']:7.1f} {r['wall'] / area:7.1f} {r['encoded']:8d} {needed:7d} "
              f"{r['encoded'] / needed:6.2f} {rss.get(name, float('nan')):7.2f} {r['cells']:6d}  {shares}")
        if r["reader_thread"]:
            print(f"{'':9s} reader thread (overlapped with the model): read {r['reader_thread'].get('read', 0):.1f} s")
    for name, r in runs.items():  # what a busy machine inflates least: the model's share is its threads waiting
        print(f"{name:9s} outside the model (wall − encode − decode): {_outside(r):.1f} s")
    for other in ("baseline", "previous", "float32"):
        if other in runs:
            b, n = runs[other], runs["new"]
            print(f"new / {other}: wall {n['wall'] / b['wall']:.2f}, cpu {n['cpu'] / b['cpu']:.2f}, "
                  f"outside the model {_outside(n) / _outside(b):.2f}, s/mm² {n['wall'] / area:.1f} vs "
                  f"{b['wall'] / area:.1f}")


def _outside(run: dict) -> float:
    return run["wall"] - run["stages"].get("encode", 0.0) - run["stages"].get("decode", 0.0)


def _median_run(runs: list[dict]) -> dict:
    """The median of wall, CPU and each stage's seconds over rounds (the rest from the first run)."""
    import statistics

    out = dict(runs[0])
    out["wall"] = statistics.median(r["wall"] for r in runs)
    out["cpu"] = statistics.median(r["cpu"] for r in runs)
    for key in ("stages", "reader_thread"):
        names = {k for r in runs for k in r[key]}
        out[key] = {k: statistics.median(r[key].get(k, 0.0) for r in runs) for k in names}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slide", default=None, help="'sample', 'synthetic' or a slide path (default: both)")
    parser.add_argument("--synthetic-size", type=int, default=3072, help="synthetic slide side (px at 0.5 µm/px); 0: none")
    parser.add_argument("--mpp", type=float, default=None, help="working resolution of the new path (default the model's)")
    parser.add_argument("--no-baseline", action="store_true", help="skip today's windowed path")
    parser.add_argument("--synthetic-baseline", action="store_true",
                        help="run the windowed path on the synthetic slide too (slow: ~7× its tiles)")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS child processes")
    parser.add_argument("--repeats", type=int, default=5, help="encoder-only rate: median over this many batches")
    parser.add_argument("--reference", action="store_true",
                        help="also compare both paths with predict() on the whole slide image (the model's own answer "
                             "on one grid; slow)")
    parser.add_argument("--previous", default=None,
                        help="a source tree of another version (holding xpath/): its path runs in this process too")
    parser.add_argument("--rounds", type=int, default=1,
                        help="runs per path, alternating (medians of wall, CPU and stage seconds are reported)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="discarded runs per path before the measured ones (the first run in a process compiles "
                             "the numba kernels of the features: seconds that a second slide does not pay)")
    parser.add_argument("--allocator", choices=["kept", "glibc"], default="kept",
                        help="'kept': freed memory stays in the process, as `xpath analyze` runs (xpath._allocator); "
                             "'glibc': malloc's defaults, as a plain Python process")
    parser.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default="float32",
                        help="arithmetic of the new path (default float32; auto: bfloat16 on CPUs with AMX)")
    parser.add_argument("--float32", action="store_true",
                        help="also run the new path in float32, side by side (and compare their instances)")
    parser.add_argument("--child", choices=["new", "float32", "baseline", "previous"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.allocator == "kept":
        from xpath._allocator import keep_freed_memory

        keep_freed_memory()
    if args.child:
        Versions(args.previous).use("previous" if args.child == "previous" else "new")
        with tempfile.TemporaryDirectory() as tmp:
            run_path(args.child, args.slide, mpp=args.mpp, synthetic_size=args.synthetic_size, out_dir=Path(tmp),
                     precision=args.precision)
        print(json.dumps({"rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
        return
    import torch

    if args.float32 and args.precision == "float32":
        parser.error("--float32 runs a float32 peer beside the new path: give the new path --precision auto or bfloat16")
    if args.rounds < 1 or args.warmup < 0:
        parser.error(f"--rounds must be >= 1 and --warmup >= 0, got {args.rounds} and {args.warmup}")
    versions = Versions(args.previous)
    print(f"torch threads {torch.get_num_threads()}, allocator {args.allocator}")
    specs = [args.slide] if args.slide else ["sample"] + (["synthetic"] if args.synthetic_size else [])
    rate = {p: encoder_rate(args.repeats, p) for p in dict.fromkeys(["float32", args.precision])}
    for spec in specs:
        with tempfile.TemporaryDirectory() as tmp:
            baseline = not args.no_baseline and (spec != "synthetic" or args.synthetic_baseline)
            paths = ((("baseline",) if baseline else ()) + (("previous",) if args.previous else ())
                     + (("float32",) if args.float32 else ()) + ("new",))
            rounds: dict[str, list[dict]] = defaultdict(list)
            for r in range(-args.warmup, args.rounds):
                for path in paths:
                    versions.use("previous" if path == "previous" else "new")
                    run = run_path(path, spec, mpp=args.mpp, synthetic_size=args.synthetic_size,
                                   out_dir=Path(tmp) / f"{path}{r}", precision=args.precision)
                    if r >= 0:
                        rounds[path].append(run)
            versions.use("new")
            runs = {path: _median_run(rs) for path, rs in rounds.items()}
            if args.rounds > 1:
                for path, rs in rounds.items():
                    print(f"{path}: wall per round " + ", ".join(f"{x['wall']:.1f}" for x in rs) + " s; cpu "
                          + ", ".join(f"{x['cpu']:.1f}" for x in rs) + " s; outside the model "
                          + ", ".join(f"{_outside(x):.1f}" for x in rs) + " s")
            needed = tiles_needed(spec, args.synthetic_size, runs["new"]["mpp"])
            rss = {} if args.no_rss else {p: peak_rss(p, spec, args.mpp, args.synthetic_size, args.allocator,
                                                      args.previous, args.precision) for p in runs}
            report(spec, runs, needed, rss)
            for precision, r in rate.items():
                limit = needed / r / runs["new"]["area_mm2"]
                print(f"encoder alone, {precision}: {r:.2f} tiles/s → encoder-bound limit {limit:.1f} s/mm² "
                      f"({needed} tiles / {runs['new']['area_mm2']:.3f} mm²)")
            for other in ("baseline", "float32"):
                if other in runs and runs["new"]["mpp"] == runs[other]["mpp"]:
                    for prompt, (a, d, k, n) in agreement(runs["new"]["masks"], runs[other]["masks"]).items():
                        print(f"  {prompt:14s} AJI new vs {other} {a:.3f}; {k} of {n} objects identical, "
                              f"shape features differ by ≤ {d:.2g} on them")
            if args.reference and spec != "synthetic":
                reference_agreement(spec, args.synthetic_size, runs["new"]["mpp"],
                                    {p: r["masks"] for p, r in runs.items()})


if __name__ == "__main__":
    main()
