"""Size, FLOPs and CPU speed of the registered segmentation models.

Prints, for every registered config: parameters (total / trainable), FLOPs per tile at
its own tile size (image path = encoder + pixel decoder; decode = joint module + heads for
one prompt; text = one prompt through the text encoder, cached when frozen), counted
with ``torch.utils.flop_counter.FlopCounterMode`` (1 multiply-add = 2 FLOPs). base and
large are built and counted on the meta device (no memory, no run).

Then the CPU throughput of ``xpath_small`` at 512 px (batch 1, one prompt, encode +
decode), side by side with its named baseline, the pretrained EfficientNet-Lite0 encoder
alone as the package ships it (``EfficientNet.extract_features``, 4.0 GFLOPs), in the same
process, and its own encoder alone (the same network, BatchNorm folded, no padded copies): median
seconds per tile and the ratios.

Run: ``.venv/bin/python benchmarks/segmentation_model.py [--repeats 7] [--threads 2]``
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from _timing import median_seconds
from torch.utils.flop_counter import FlopCounterMode

from xpath.segmentation import build_model, get_config, list_models

PROMPT = "nuclei-level tumor in breast pathology"


def _flops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def _decode_flops(model, size: int, device: str) -> tuple[float, float]:
    """GFLOPs of the image path and of decoding one prompt (text embedding given, 12 tokens)."""
    x = torch.zeros(1, 3, size, size, device=device)
    feats = {}

    def image():
        feats["f"] = model.encode_image(x)

    g_image = _flops(image)
    f = feats["f"]
    text_dim = model.text_encoder.dim

    def decode():
        tokens = model.text_proj(torch.zeros(1, 12, text_dim, device=device))  # (1, T, D)
        pooled = torch.zeros(1, 1, text_dim, device=device)
        prompt = model.prompt_proj(pooled)
        queries, prompt_out = model.joint(f.levels, prompt, tokens, torch.zeros(1, 12, dtype=torch.bool,
                                                                                 device=device))
        out = model.heads(queries, prompt_out, model.class_text_proj(pooled), f.pixel, f.pixel_distance)
        torch.nn.functional.interpolate(out["masks"], scale_factor=4, mode="bilinear")

    return g_image, _flops(decode)


def _text_flops(config) -> float:
    """GFLOPs of one 12-token prompt through the text encoder (built on CPU: HF BERT has data-dependent checks)."""
    from xpath.segmentation.modeling import HFTextEncoder

    encoder = HFTextEncoder(config.text_encoder, frozen=True)
    ids = torch.ones(1, 12, dtype=torch.long)
    with torch.no_grad():
        return _flops(lambda: encoder.model(input_ids=ids, attention_mask=torch.ones_like(ids)))


def sizes_and_flops() -> None:
    print(f"{'model':<12} {'tile':>5} {'params':>13} {'trainable':>13} {'GFLOPs image':>13} "
          f"{'GFLOPs decode/prompt':>21} {'GFLOPs text/prompt':>19}")
    for name in list_models():
        config = get_config(name)
        device = "meta" if config.image_size >= 1024 else "cpu"
        with torch.device(device), torch.no_grad():
            model = build_model(config).eval()
            g_image, g_decode = _decode_flops(model, config.image_size, device)
        g_text = _text_flops(config)
        total = model.num_parameters()
        trainable = model.num_parameters(trainable_only=True)
        print(f"{name:<12} {config.image_size:>5} {total:>13,} {trainable:>13,} {g_image:>13.2f} "
              f"{g_decode:>21.3f} {g_text:>19.3f}")
        del model


def throughput(repeats: int) -> None:
    from efficientnet_lite_pytorch import EfficientNet

    from xpath.segmentation import create_model
    from xpath.segmentation.modeling import efficientnet_lite0_weights_path

    model = create_model("xpath_small", device="cpu").eval()
    shipped = EfficientNet.from_name("efficientnet-lite0").eval()
    shipped.load_state_dict(torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True))
    image = np.random.default_rng(0).integers(0, 256, (1, 512, 512, 3), dtype=np.uint8)
    with torch.inference_mode():
        x = model.preprocess(image)
        model.text_encoder([PROMPT])  # embedding cached, as in use
        baseline = median_seconds(lambda: shipped.extract_features(x), repeats)
        encoder = median_seconds(lambda: model.image_encoder(x), repeats)
        full = median_seconds(lambda: model(x, [PROMPT]), repeats)
        feats = model.encode_image(x)
        decode = median_seconds(lambda: model.decode(feats, [PROMPT]), repeats)
    print(f"\nxpath_small CPU, 512 px, batch 1, {torch.get_num_threads()} threads, median of {repeats} "
          f"(load average {os.getloadavg()[0]:.1f}):")
    print(f"  baseline: shipped EfficientNet-Lite0 encoder alone: {baseline:.3f} s/tile = {1 / baseline:.2f} tiles/s")
    print(f"  xpath_small's encoder alone (BatchNorm folded):     {encoder:.3f} s/tile = {1 / encoder:.2f} tiles/s "
          f"(ratio to baseline {encoder / baseline:.2f}x)")
    print(f"  xpath_small encode + decode (1 prompt):             {full:.3f} s/tile = {1 / full:.2f} tiles/s "
          f"(ratio to baseline {full / baseline:.2f}x)")
    print(f"  decode only, cached image features:                 {decode:.3f} s "
          f"({decode / full:.0%} of the full call)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--skip-flops", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.skip_flops:
        sizes_and_flops()
    throughput(args.repeats)


if __name__ == "__main__":
    main()
