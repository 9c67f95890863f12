"""predict_objects: N spatial prompts → N objects in one call, the kept-object rules, and bad input."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from xpath.datasets import synthetic_tissue
from xpath.segmentation import TextPromptPredictor, create_model
from xpath.segmentation.inference.objects import (NUCLEUS_REACH_UM, ObjectPrediction, check_object_prompts,
                                                 nucleus_shares, select_object)
from xpath.segmentation.modeling.box_prior import box_prior_logits
from xpath.segmentation.modeling.segmenter import OBJECT_PROMPT

DISCS = [(40, 40, 12), (40, 90, 12), (110, 60, 16), (150, 150, 10)]  # (y, x, radius) in input pixels


class _Features(SimpleNamespace):
    def __init__(self, x):
        super().__init__(x=x)

    def take(self, index):
        return _Features(self.x[index: index + 1])


class ObjectStandIn(torch.nn.Module):
    """The model contract with the real model's object rule: content logits (the red channel: +8 on a disc,
    -8 off it) plus the box prior; points alone give the content."""

    def __init__(self, image_size: int = 128, mpp: float = 0.5) -> None:
        super().__init__()
        self.config = SimpleNamespace(name="standin", image_size=image_size, mpp=mpp, vocabulary=[])
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        self.decoded_prompts = 0

    def preprocess(self, images):
        images = images[None] if images.ndim == 3 else images
        return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0

    def encode_image(self, x):
        return _Features(x)

    def decode(self, feats, prompts, boxes=None, points=None, **options):
        x = feats.x
        b, _, h, w = x.shape
        self.decoded_prompts += len(prompts)
        content = torch.where(x[:, :1] > 0.5, 8.0, -8.0).expand(b, len(prompts), h, w)
        logits = content if boxes is None else content + box_prior_logits(boxes, (h, w), 1)
        zeros = torch.zeros(b, len(prompts))
        return SimpleNamespace(mask_logits=logits, distance_logits=logits, presence_logits=zeros)


def _discs(shape=(200, 200)):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = np.zeros(shape + (3,), np.uint8)
    truth = []
    for y, x, r in DISCS:
        disc = (yy - y) ** 2 + (xx - x) ** 2 <= r * r
        image[disc, 0] = 255
        truth.append(disc)
    return image, truth


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


@pytest.fixture
def predictor():
    image, truth = _discs()
    pred = TextPromptPredictor(ObjectStandIn(), overlap=32, progress=False).set_image(image, mpp=0.5)
    return pred, truth


def test_n_boxes_give_n_objects_in_one_call(predictor):
    pred, truth = predictor
    boxes = np.array([[x - r - 2, y - r - 2, x + r + 2, y + r + 2] for y, x, r in DISCS], float)
    out = pred.predict_objects(boxes=boxes)
    assert isinstance(out, ObjectPrediction) and len(out) == 4
    assert out.masks.shape == (4, 200, 200) and out.masks.dtype == bool and out.scores.shape == (4,)
    for k, disc in enumerate(truth):
        assert _iou(out.masks[k], disc) > 0.95  # its own disc, not a neighbour 50 px away
    assert pred.model.decoded_prompts == 4  # every object decoded once
    np.testing.assert_array_equal(np.unique(out.to_instances()), [0, 1, 2, 3, 4])


def test_a_box_inside_one_nucleus_returns_that_nucleus_and_nothing_beyond_its_neighbourhood(predictor):
    pred, truth = predictor
    y, x, _ = DISCS[2]
    box = np.array([[x - 5, y - 5, x + 5, y + 5]], float)  # well inside the radius-16 disc
    (mask,) = pred.predict_objects(boxes=box).masks
    assert mask[y, x] and not (mask & truth[0]).any() and not (mask & truth[3]).any()
    ys, xs = np.nonzero(mask)
    margin = 8  # box_margin: a quarter of 10 px, at least 8
    assert xs.min() >= x - 5 - margin and xs.max() < x + 5 + margin
    assert ys.min() >= y - 5 - margin and ys.max() < y + 5 + margin


def test_points_keep_the_component_under_a_positive_point(predictor):
    pred, truth = predictor
    points = np.array([[[40.0, 40.0]], [[90.0, 40.0]], [[60.0, 110.0]]])  # (x, y): discs 0, 1, 2
    out = pred.predict_objects(points=points)
    for k in range(3):
        assert _iou(out.masks[k], truth[k]) > 0.95
    # a negative point on the only hit component removes it; a miss by a few pixels still hits
    neg = pred.predict_objects(points=[[[40.0, 40.0], [42.0, 42.0]]], point_labels=[[1, 0]])
    assert not neg.masks[0].any() and neg.scores[0] == 0.0
    near = pred.predict_objects(points=[[[40.0 + 12 + 4, 40.0]]])  # 4 px right of disc 0's edge
    assert _iou(near.masks[0], truth[0]) > 0.95


def test_boxes_with_text_keep_every_object_centred_in_the_box():
    prob = np.zeros((100, 100))
    prob[10:20, 10:20] = prob[10:20, 40:50] = prob[70:90, 70:90] = 1.0
    got = select_object(prob, box=np.array([5.0, 5.0, 55.0, 25.0]), with_text=True)
    assert got[15, 15] and got[15, 45] and not got[80, 80]
    one = select_object(prob, box=np.array([5.0, 5.0, 55.0, 25.0]), with_text=False)
    assert one.sum() == 100  # without text: the one object with most pixels in the box


def test_objects_map_back_to_input_pixels_through_mpp():
    image, truth = _discs()
    pred = TextPromptPredictor(ObjectStandIn(), overlap=32, progress=False).set_image(image, mpp=0.25)  # 2× down
    y, x, r = DISCS[2]
    out = pred.predict_objects(boxes=[[x - r - 2, y - r - 2, x + r + 2, y + r + 2]])
    assert out.masks.shape == (1, 200, 200) and _iou(out.masks[0], truth[2]) > 0.85


@pytest.mark.parametrize("kwargs, match", [
    ({}, "needs boxes"),
    ({"boxes": [[0, 0, 10]]}, r"boxes must have shape \(N, 4\)"),
    ({"boxes": [[10, 10, 5, 20]]}, "x_max > x_min"),
    ({"boxes": [[10, 10, 10, 20]]}, "x_max > x_min"),
    ({"boxes": [[0, 0, 10, np.nan]]}, "NaN"),
    ({"boxes": [[150, 150, 250, 190]]}, "inside the image"),
    ({"boxes": [[-5, 0, 10, 10]]}, "inside the image"),
    ({"points": [[10, 10]]}, r"points must have shape \(N, K, 2\)"),
    ({"points": [[[10, np.nan]]]}, "NaN"),
    ({"points": [[[10, 300]]]}, "inside the image"),
    ({"points": [[[10, 10], [20, 20]]], "point_labels": [1, 0]}, r"point_labels must have shape \(N, K\)"),
    ({"points": [[[10, 10]]], "point_labels": [[2]]}, "must be 1"),
    ({"points": [[[10, 10]]], "point_labels": [[0]]}, "at least one positive"),
    ({"point_labels": [[1]]}, "without points"),
    ({"boxes": [[0, 0, 10, 10]], "points": [[[5, 5]], [[6, 6]]]}, "same N"),
])
def test_bad_spatial_prompts_raise_naming_the_argument(kwargs, match):
    boxes, points, labels = (kwargs.get(k) for k in ("boxes", "points", "point_labels"))
    with pytest.raises(ValueError, match=match):
        check_object_prompts(boxes, points, labels, (200, 200))


def test_real_tiny_model_answers_boxes_and_points():
    torch.manual_seed(0)
    tissue = synthetic_tissue(1, size=(300, 280), mpp=0.5)
    pred = TextPromptPredictor(create_model("xpath_tiny", device="cpu"), progress=False).set_image(tissue.image, mpp=0.5)
    out = pred.predict_objects(boxes=[[10, 10, 60, 50], [100, 120, 180, 200]], prompt="nuclei")
    assert out.masks.shape == (2, 300, 280) and out.prompt == "nuclei"
    assert not out.masks[0][:, 120:].any()  # nothing beyond the first box's neighbourhood
    pts = pred.predict_objects(points=[[[30.0, 30.0]]])
    assert pts.masks.shape == (1, 300, 280) and np.isfinite(pts.scores).all()


# ---------------------------------------------------------------------------- a model without a trained box path
GLAND = (100, 100, 45)  # (y, x, radius): a "gland" holding the small "nucleus" NUCLEUS
NUCLEUS = (100, 120, 8)


class AnswerStandIn(ObjectStandIn):
    """A model with a record of nuclei and glands whose box/point path was never trained: "nuclei" answers the
    red channel, "glands" the green one; it records every decode's prompts and whether boxes reached it."""

    def __init__(self, image_size: int = 128) -> None:
        super().__init__(image_size=image_size)
        from xpath.ontology import load_vocabulary
        from xpath.segmentation import ModelVocabulary, TrainedLabel

        voc = load_vocabulary()
        self.config.spatial_trained = False
        self.trained_vocabulary = ModelVocabulary(tuple(TrainedLabel(voc.lookup(p)) for p in (
            "nuclei-level nucleus in unspecified pathology", "tissue-level gland in colon pathology")))
        self.calls = []

    def decode(self, feats, prompts, boxes=None, points=None, **options):
        self.calls.append((list(prompts), boxes is not None or points is not None))
        x = feats.x
        b = x.shape[0]
        logits = torch.cat([torch.where((x[:, :1] if p == "nuclei" else x[:, 1:2]) > 0.5, 8.0, -8.0) for p in prompts], 1)
        return SimpleNamespace(mask_logits=logits, distance_logits=logits, presence_logits=torch.zeros(b, len(prompts)))


def _disc(shape, y, x, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - y) ** 2 + (xx - x) ** 2 <= r * r


def _painted(model, red, green=None):
    """The predictor of ``model`` set on an image (0.5 µm/px) whose red channel ("nuclei") is ``red`` and whose
    green channel ("glands") is ``green``."""
    image = np.zeros(red.shape + (3,), np.uint8)
    image[red, 0] = 255
    if green is not None:
        image[green, 1] = 255
    return TextPromptPredictor(model, progress=False).set_image(image, mpp=0.5)


def _nucleus_in_gland(model):
    """The predictor of ``model`` set on the image of a nucleus (red) in a gland (green), both discs, and
    the box of each."""
    nucleus, gland = _disc((200, 200), *NUCLEUS), _disc((200, 200), *GLAND)
    pred = _painted(model, nucleus, gland)
    (y, x, r), (gy, gx, gr) = NUCLEUS, GLAND
    boxes = [[x - r - 1, y - r - 1, x + r + 1, y + r + 1], [gx - gr - 2, gy - gr - 2, gx + gr + 2, gy + gr + 2]]
    model.calls.clear()
    return pred, nucleus, gland, boxes


def test_without_a_trained_box_path_objects_come_from_the_text_answer():
    model = AnswerStandIn()
    pred, nucleus, gland, boxes = _nucleus_in_gland(model)
    y, x, _ = NUCLEUS
    out = pred.predict_objects(boxes=boxes)
    assert _iou(out.masks[0], nucleus) > 0.95  # the box of a nucleus: the nucleus, not the gland around it
    assert _iou(out.masks[1], gland) > 0.95  # the box of the gland: the gland
    # each structure decoded alone (prompts decoded together attend to each other), with no boxes
    assert model.calls and model.calls == [(["nuclei"], False), (["glands"], False)] * (len(model.calls) // 2)
    point = pred.predict_objects(points=[[[x + 0.5, y + 0.5]]])
    assert _iou(point.masks[0], nucleus) > 0.95  # a point: the innermost object under it
    with_text = pred.predict_objects(boxes=boxes[:1], prompt="glands")
    assert with_text.masks[0].any() and not (with_text.masks[0] & ~gland).any()  # the glands, clipped to the box


def test_a_trained_box_path_answers_objects_larger_than_a_tile_from_the_text_answer():
    model = AnswerStandIn(image_size=64)  # a tile of 64 px: the gland's box (94 px) needs a larger window
    model.config.spatial_trained = True
    pred, _, gland, boxes = _nucleus_in_gland(model)
    out = pred.predict_objects(boxes=boxes)
    assert sorted(model.calls) == [(["glands"], False), (["nuclei"], False), ([OBJECT_PROMPT], True)]
    assert _iou(out.masks[1], gland) > 0.95  # the gland, from the "glands" answer on its large window


def test_a_box_on_one_of_two_touching_nuclei_keeps_that_nucleus_cropped_to_the_box():
    model = AnswerStandIn()
    left, right = _disc((200, 200), 100, 88, 12), _disc((200, 200), 100, 111, 12)  # they touch: one component
    pred = _painted(model, left | right)
    out = pred.predict_objects(boxes=[[75, 87, 101, 113]])  # the left nucleus's box, 1 px of slack
    mask = out.masks[0]
    assert _iou(mask, left) > 0.85  # the clump alone would score about 0.5
    assert not mask[:, 101:].any() and not mask[:87].any() and not mask[113:].any()  # nothing outside the box


def test_a_point_takes_the_innermost_structure_even_when_another_object_there_is_smaller():
    model = AnswerStandIn()
    nucleus, fragment = _disc((200, 200), 100, 100, 10), _disc((200, 200), 100, 100, 4)  # a small "gland" blob
    pred = _painted(model, nucleus, fragment)
    point = pred.predict_objects(points=[[[100.5, 100.5]]])
    assert _iou(point.masks[0], nucleus) > 0.95  # the nucleus under the point, not the smaller gland blob


def test_a_box_of_nucleus_size_is_answered_by_the_nuclei_even_where_a_tissue_structure_fills_it_better():
    model = AnswerStandIn()
    nucleus, blob = _disc((200, 200), 100, 100, 6), _disc((200, 200), 100, 100, 11)  # a "gland" blob around it
    small = _painted(model, nucleus, blob).predict_objects(boxes=[[88, 88, 112, 112]])  # the blob's box: 12 µm
    assert _iou(small.masks[0], nucleus) > 0.95
    gland, inner = _disc((200, 200), 100, 100, 40), _disc((200, 200), 100, 100, 36)  # inner: "nuclei" that fit too
    large = _painted(model, inner, gland).predict_objects(boxes=[[58, 58, 142, 142]])  # 42 µm: tissue-sized
    assert _iou(large.masks[0], gland) > 0.95


def test_a_point_on_one_of_two_touching_nuclei_keeps_that_nucleus_not_the_clump():
    model = AnswerStandIn()
    left, right = _disc((200, 200), 100, 90, 10), _disc((200, 200), 100, 110, 10)  # they touch: one component
    pred = _painted(model, left | right)
    out = pred.predict_objects(points=[[[90.5, 100.5]]])  # the left nucleus's centre
    mask = out.masks[0]
    assert _iou(mask, left) > 0.8  # the clump would score about 0.5
    yy, xx = np.nonzero(mask)
    reach_px = NUCLEUS_REACH_UM / 0.5
    assert ((yy + 0.5 - 100.5) ** 2 + (xx + 0.5 - 90.5) ** 2 <= reach_px ** 2 + 1e-9).all()
    with_box = pred.predict_objects(points=[[[90.5, 100.5]]], boxes=[[75, 85, 125, 115]])  # a box bounds it instead
    assert _iou(with_box.masks[0], left | right) > 0.95


def test_predict_warns_that_an_untrained_box_path_ignores_its_boxes():
    model = AnswerStandIn()
    pred, nucleus, _, boxes = _nucleus_in_gland(model)
    with pytest.warns(UserWarning, match="ignores boxes and points"):
        seg = pred.predict(["nuclei"], boxes=boxes[:1], instances=False)
    assert _iou(seg.semantic["nuclei"], nucleus) > 0.95  # the text mask, as the warning says


def test_a_click_on_a_clump_keeps_the_clicked_instance_share():
    left, right = _disc((60, 80), 30, 28, 12), _disc((60, 80), 30, 50, 12)  # overlapping discs: one component
    prob = (left | right).astype(np.float64)
    instances = np.zeros((60, 80), np.int32)
    instances[_disc((60, 80), 30, 28, 8)] = 1  # the model's two nuclei, smaller than the component
    instances[_disc((60, 80), 30, 50, 8)] = 2
    click = np.array([[28.5, 30.5, 1.0]])
    whole = select_object(prob, points=click)
    assert (whole == (left | right)).all()  # without the instances: the clump
    share = select_object(prob, points=click, shares=nucleus_shares(prob, instances))
    assert share[30, 28] and not share[30, 50]
    assert _iou(share, left) > 0.8 and not (share & ~(left | right)).any()
    lone = select_object(prob, points=click, shares=nucleus_shares(prob, np.zeros_like(instances)))  # stays whole
    assert (lone == whole).all()
