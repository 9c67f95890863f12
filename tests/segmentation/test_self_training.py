"""Self-training: a model's nuclei written as pseudo-labels, read back by training, resumable and attributable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xpath.datasets import AnnotatedImage
from xpath.ontology import Label
from xpath.segmentation.training.config import load_config
from xpath.segmentation.training.pseudo_labels import label_path, read_model_nuclei, write_model_nuclei
from xpath.segmentation.training.records import pseudo_nuclei_triples
from xpath.segmentation.training.self_training import label_images, main
from xpath.segmentation.training.sources import build_datasets

GLAND, NUCLEI = Label("colon", "tissue", "gland"), Label("colon", "nuclei", "nucleus")


class _StubPredictor:
    """Answers every prompt with the image's dark pixels: a known mask to find again on disk."""

    def __init__(self):
        self.calls = []

    def set_image(self, image, mpp=None):
        self.image = image
        self.calls.append(mpp)
        return self

    def predict(self, prompts, *, threshold, instances):
        from types import SimpleNamespace

        return SimpleNamespace(semantic={p: self.image.mean(-1) < 100 for p in prompts})


def _gland_image(seed: int, image_id: str, mpp=None) -> AnnotatedImage:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)
    gland = np.zeros((40, 56), np.int32)
    gland[5:30, 10:40] = 1
    return AnnotatedImage(image=image, instances=None, class_map=gland, classes={1: GLAND}, mpp=mpp,
                          source="ebhi", image_id=image_id, split="train")


def test_labels_are_written_once_and_read_back_exactly(tmp_path):
    records = [_gland_image(0, "a"), _gland_image(1, "b", mpp=0.5)]
    stub = _StubPredictor()
    assert label_images(stub, records, folder=tmp_path, mpp=1.0, progress=False) == 2
    assert stub.calls == [1.0, 0.5]  # the stated mpp wins over the source's assumed one
    for rec in records:
        assert np.array_equal(read_model_nuclei(tmp_path, rec), rec.image.mean(-1) < 100)
    assert label_images(stub, records, folder=tmp_path, mpp=1.0, progress=False) == 0  # resumes: nothing left
    assert len(stub.calls) == 2
    with pytest.raises(ValueError, match="states no mpp"):
        label_images(stub, [_gland_image(2, "c")], folder=tmp_path, progress=False)

    gland, nuclei = pseudo_nuclei_triples(records[0], mpp=1.0, nuclei=read_model_nuclei(tmp_path, records[0]))
    assert (gland.label, nuclei.label) == (GLAND, NUCLEI) and nuclei.instances is None
    assert np.array_equal(nuclei.semantic, records[0].image.mean(-1) < 100)
    with pytest.raises(ValueError, match="bool mask of the image's shape"):
        pseudo_nuclei_triples(records[0], mpp=1.0, nuclei=np.ones((3, 3), bool))
    with pytest.raises(FileNotFoundError, match="no pseudo-label for ebhi image 'c'"):
        read_model_nuclei(tmp_path, _gland_image(2, "c"))
    other = AnnotatedImage(image=np.zeros((8, 8, 3), np.uint8), instances=None, class_map=np.ones((8, 8), np.int32),
                           classes={1: GLAND}, mpp=1.0, source="ebhi", image_id="a", split="train")
    with pytest.raises(ValueError, match="relabel the folder"):
        read_model_nuclei(tmp_path, other)
    with pytest.raises(ValueError, match="plain file name"):
        label_path(tmp_path, "ebhi", "../x")


def test_the_command_labels_training_images_only_and_training_reads_them(shared_data, tmp_path, capsys):
    from xpath.segmentation import create_model, save_checkpoint

    torch.manual_seed(0)
    checkpoint = save_checkpoint(create_model("xpath_tiny", device="cpu"), tmp_path / "labeller.pt")
    labels = tmp_path / "pseudo"
    source = (f'{{dataset: ebhi, limit: 10, val: {{group: "^(.*?__GT[^-]+)-", fraction: 0.3}}, '
              f'pseudo_nuclei: {{labels: "{labels}"}}}}')
    config = tmp_path / "c.yaml"
    config.write_text(f"model: xpath_tiny\ndata: {{sources: [{source}], assume_mpp: {{ebhi: 1.0}}}}\n")
    with pytest.raises(FileNotFoundError, match="write the folder's labels first"):
        build_datasets(load_config(config), mpp=1.0, tile_size=128)

    assert main(["--config", str(config), "--checkpoint", str(checkpoint), "--no-progress"]) == 0
    written = sorted(p.stem for p in (labels / "ebhi").glob("*.npz"))
    assert capsys.readouterr().out.strip() == f'{{"ebhi": {len(written)}}}'
    train, val = build_datasets(load_config(config), mpp=1.0, tile_size=128)
    assert written == sorted(r.image_id for r in train.records)  # every training image, no validation image
    assert not {r.image_id for r in val.records} & set(written)
    assert all(r.labels == (GLAND,) for r in val.records)

    # training reads the files: a mask put there is the record's nucleus target, pixel for pixel
    first = train.records[0]
    mark = np.zeros(first.image.shape[:2], bool)
    mark[::7, ::5] = True
    with np.load(label_path(labels, "ebhi", first.image_id)) as data:
        assert tuple(data["shape"]) == first.image.shape[:2]
    write_model_nuclei(label_path(labels, "ebhi", first.image_id), mark)
    train, _ = build_datasets(load_config(config), mpp=1.0, tile_size=128)
    record = next(r for r in train.records if r.image_id == first.image_id)
    assert record.labels == (GLAND, NUCLEI) and np.array_equal(record.masks[1], mark)
    assert train.partial_labels == {"ebhi": frozenset({NUCLEI})}  # model labels are not exhaustive either

    # a second run resumes (nothing to do; the planted mask is kept); another model may not write there
    assert main(["--config", str(config), "--checkpoint", str(checkpoint), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == '{"ebhi": 0}'
    assert np.array_equal(read_model_nuclei(labels, next(r for r in train.records
                                                         if r.image_id == first.image_id)), mark)
    torch.manual_seed(1)
    other = save_checkpoint(create_model("xpath_tiny", device="cpu"), tmp_path / "other.pt")
    with pytest.raises(ValueError, match="another model"):
        main(["--config", str(config), "--checkpoint", str(other), "--no-progress"])


def test_the_config_takes_true_false_or_a_labels_folder(tmp_path):
    config = tmp_path / "c.yaml"
    for value in ("{labels: runs/pseudo}", "true", "false"):
        config.write_text(f"model: xpath_tiny\ndata: {{sources: [{{dataset: ebhi, pseudo_nuclei: {value}}}]}}\n")
        load_config(config)
    for value in ("{folder: runs/pseudo}", "{labels: 3}", "yes please"):
        config.write_text(f"model: xpath_tiny\ndata: {{sources: [{{dataset: ebhi, pseudo_nuclei: {value}}}]}}\n")
        with pytest.raises(ValueError, match=r"pseudo_nuclei must be true, false or \{labels: DIR\}"):
            load_config(config)
