import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import xpath.datasets
from xpath.datasets import (
    DATASETS,
    NUCLEUS_TYPES,
    REGION_TYPES,
    iter_dataset,
    load_dataset,
    sample_he,
    sample_he_path,
    synthetic_tissue,
)
from xpath.io import read_image


def test_sample_he_is_stardists_tile_shipped_inside_xpath():
    """The shipped file is StarDist 0.9.2's histo.jpg byte for byte, without needing stardist."""
    path = sample_he_path()
    assert path.parent == Path(xpath.datasets.__file__).parent / "data"
    # sha256sum of stardist-0.9.2's stardist/data/images/histo.jpg
    stardist_092 = "1b4f4cf440f22438d114ac629d102d2b403ff1d22ae8b00b1c674bfbca410a02"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == stardist_092
    assert (path.parent / "histo.LICENSE.txt").read_text().count("BSD 3-Clause License") == 1
    # Where stardist is installed (it is in the development environment), its copy decodes to
    # the same pixels: sample_he() returns what it returned when it read stardist's file.
    spec = importlib.util.find_spec("stardist")  # finds the package without importing it
    if spec is not None:
        theirs = Path(spec.submodule_search_locations[0], "data", "images", "histo.jpg")
        assert np.array_equal(read_image(theirs).array, sample_he().array)


def test_sample_he_is_real_rgb():
    img = sample_he()
    assert img.array.dtype == np.uint8 and img.array.shape == (300, 500, 3)
    assert img.mpp == 0.5
    # H&E: haematoxylin-rich pixels are blue-purple (blue > green), none is pure grey
    assert (img.array[..., 2].astype(int) - img.array[..., 1]).mean() > 20


class TestSynthetic:
    def test_deterministic(self):
        a, b = synthetic_tissue(3, size=128), synthetic_tissue(3, size=128)
        assert np.array_equal(a.image, b.image) and np.array_equal(a.instances, b.instances)
        assert not np.array_equal(a.image, synthetic_tissue(4, size=128).image)

    def test_ground_truth_is_consistent(self):
        t = synthetic_tissue(0, size=256)
        n = len(t.cells)
        assert n > 20
        assert t.instances.dtype == np.int32 and t.instances.max() == n
        assert set(np.unique(t.instances)) == set(range(n + 1))  # ids 1..N, every nucleus visible
        assert ((t.nucleus_types > 0) == (t.instances > 0)).all()
        # the per-pixel type of each nucleus equals its class in the table
        first_pixel_type = np.zeros(n + 1, np.uint8)
        first_pixel_type[t.instances.ravel()] = t.nucleus_types.ravel()
        expected = t.cells["class"].cat.codes.to_numpy() + 1
        assert (first_pixel_type[1:] == expected).all()
        assert set(np.unique(t.regions)) <= set(range(len(REGION_TYPES)))

    def test_nuclei_are_dark_in_haematoxylin(self):
        t = synthetic_tissue(1, size=256)
        gray = t.image.mean(2)
        assert gray[t.instances > 0].mean() < gray[(t.instances == 0) & t.region("stroma")].mean() - 40

    def test_planted_size_effect(self):
        small = synthetic_tissue(5, size=384, nuclear_size_scale=0.8, touching=0)
        large = synthetic_tissue(5, size=384, nuclear_size_scale=1.4, touching=0)

        def mean_tumour_area(t):
            ids = t.cells.loc[t.cells["class"] == "tumour", "id"].to_numpy()
            return np.bincount(t.instances.ravel())[ids].mean()

        assert mean_tumour_area(large) > 2.0 * mean_tumour_area(small)

    def test_infiltration_controls_lymphocytes_in_tumour(self):
        def in_tumour(infiltration):
            t = synthetic_tissue(2, size=384, infiltration=infiltration)
            lymph = t.semantic("lymphocyte")
            return (lymph & t.region("tumour")).sum()

        assert in_tumour(0.0) < 0.2 * in_tumour(1.0)

    def test_touching_pairs_exist(self):
        from scipy import ndimage

        t = synthetic_tissue(0, size=256, touching=0.5)
        grown = ndimage.grey_dilation(t.instances, size=3)
        touching = (grown != t.instances) & (t.instances > 0) & (grown > 0)
        assert touching.any()
        assert t.cells["touching"].sum() > 0

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="mpp"):
            synthetic_tissue(0, mpp=0)
        with pytest.raises(ValueError, match="touching must be in"):
            synthetic_tissue(0, touching=2)
        with pytest.raises(ValueError, match="size"):
            synthetic_tissue(0, size=4)
        with pytest.raises(ValueError, match="nucleus_type"):
            synthetic_tissue(0, size=64).semantic("mitosis")


def _counts(shared_data, folder):
    return {r["name"]: r for r in json.loads((shared_data / folder / "counts.json").read_text())}


@pytest.mark.parametrize("name", ["monuseg", "consep", "nucls", "cryonuseg"])
def test_instance_counts_match_provenance(shared_data, name):
    counts = _counts(shared_data, DATASETS[name].folder)
    limit = 40 if name == "consep" else None
    records = load_dataset(name, limit=limit, root=shared_data)
    assert records
    for rec in records:
        assert rec.image.dtype == np.uint8 and rec.image.ndim == 3
        assert rec.instances.shape == rec.image.shape[:2] and rec.instances.dtype == np.int32
        n = len(np.unique(rec.instances)) - (0 in rec.instances)
        assert n == counts[rec.image_id]["n_instances"]
        assert rec.instances.max() == n  # consecutive ids as PROVENANCE.md says


def test_monuseg_totals(shared_data):
    records = load_dataset("monuseg", root=shared_data)
    assert len(records) == 27
    assert sum(int(r.instances.max()) for r in records) == 11646
    assert sum(r.split == "test" for r in records) == 14
    assert all(0.24 < r.mpp < 0.26 for r in records)


def test_consep_types_match_counts(shared_data):
    counts = _counts(shared_data, "consep_train")
    for rec in load_dataset("consep", limit=10, root=shared_data):
        # the majority type of each instance, counted per type
        n = rec.instances.max()
        votes = np.zeros((n + 1, 5), int)
        np.add.at(votes, (rec.instances.ravel(), rec.class_map.ravel()), 1)
        majority = votes[1:].argmax(1)
        got = {str(k): int(v) for k, v in zip(*np.unique(majority, return_counts=True))}
        assert got == counts[rec.image_id]["type_counts"]


def test_consep_triples_cover_types(shared_data):
    rec = next(iter_dataset("consep", root=shared_data))
    triples = rec.triples()
    prompts = {t.prompt for t in triples}
    assert "nuclei-level nucleus in colon pathology" in prompts
    for t in triples:
        assert t.semantic.dtype == bool and t.semantic.shape == rec.image.shape[:2]
        assert t.image is rec.image  # shared, not copied
        if t.instances is not None:
            assert ((t.instances > 0) == t.semantic).all()
    union = np.any([t.semantic for t in triples if t.label.object != "nucleus"], axis=0)
    assert (union == (rec.instances > 0)).all()


def test_ebhi_is_semantic_tissue(shared_data):
    counts = _counts(shared_data, "ebhi_seg")
    recs = load_dataset("ebhi", root=shared_data)
    assert len(recs) == 120
    assert {r.split for r in recs} == {
        "Adenocarcinoma", "High-grade IN", "Low-grade IN", "Normal", "Polyp", "Serrated adenoma"
    }
    for rec in recs[:10]:
        (triple,) = rec.triples()
        assert triple.instances is None and triple.label.structure == "tissue"
        assert triple.semantic.mean() == pytest.approx(counts[rec.image_id]["fg_frac"], abs=2e-3)


def test_glas_is_semantic_glands_at_20x(shared_data):
    counts = _counts(shared_data, "glas_train")
    recs = load_dataset("glas", root=shared_data)
    assert len(recs) == 85 == len(counts)
    assert {r.mpp for r in recs} == {0.62005}
    for rec in recs[:8]:
        row = counts[rec.image_id]
        assert rec.image.shape == (row["h"], row["w"], 3) and rec.image.dtype == np.uint8
        (triple,) = rec.triples()
        assert triple.instances is None and triple.prompt == "tissue-level gland in colon pathology"
        assert triple.semantic.mean() == pytest.approx(row["gland_fraction"], abs=2e-3)


def test_ebhi_cohort_is_semantic_glands_of_other_patients(shared_data):
    counts = _counts(shared_data, "ebhi_cohort")
    recs = load_dataset("ebhi_cohort", root=shared_data)
    assert len(recs) == 206 == len(counts)  # PROVENANCE.md: 206 images
    assert {r.mpp for r in recs} == {None}  # EBHI states no pixel size
    for rec in recs[::25]:
        row = counts[rec.image_id]
        assert rec.image.shape == (row["h"], row["w"], 3) and rec.split == row["category"]
        (triple,) = rec.triples()
        assert triple.instances is None and triple.prompt == "tissue-level gland in colon pathology"
        assert triple.semantic.mean() == pytest.approx(row["fg_frac"], abs=2e-3)
    from xpath.datasets import ebhi_study_table

    patients = ebhi_study_table(root=shared_data, include_serrated=True).groupby("source")["group"].agg(set)
    assert patients["ebhi_cohort"] == {row["patient"] for row in counts.values()}
    assert not patients["ebhi_seg"] & patients["ebhi_cohort"]  # no patient in both folders


def test_monuseg_binary_is_semantic_only(shared_data):
    rec = next(iter_dataset("monuseg_binary", root=shared_data))
    assert rec.instances is None
    (triple,) = rec.triples()
    assert triple.semantic.dtype == bool and 0.05 < triple.semantic.mean() < 0.6


def test_split_filter_and_unknown_name(shared_data):
    assert {r.split for r in iter_dataset("nucls", split="test", root=shared_data)} == {"test"}
    with pytest.raises(ValueError, match="name must be one of"):
        load_dataset("pannuke", root=shared_data)


def test_missing_root_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("nucls", root=tmp_path)


def test_nucleus_types_constant():
    assert NUCLEUS_TYPES == ("tumour", "lymphocyte", "stromal")


def test_ebhi_study_table_matches_the_provenance_counts(shared_data):
    from xpath.datasets import EBHI_MPP, ebhi_study_table

    table = ebhi_study_table(root=shared_data)
    # PROVENANCE.md of ebhi_cohort: with ebhi_seg, 326 images; high grade 123, low grade 182, serrated 21
    assert len(table) == 305 and table["label"].value_counts().to_dict() == {0: 182, 1: 123}
    assert set(table["category"]) == {"Normal", "Polyp", "Low-grade IN", "High-grade IN", "Adenocarcinoma"}
    assert table.groupby("source").size().to_dict() == {"ebhi_cohort": 205, "ebhi_seg": 100}
    assert (table["mpp"] == EBHI_MPP).all() and EBHI_MPP == 1.0
    assert table["group"].str.match(r"^GT[^-_]+$").all()  # the file-name prefix before the first '-'
    serrated = ebhi_study_table(root=shared_data, include_serrated=True)
    assert len(serrated) == 326 and (serrated["label"] == -1).sum() == 21
    every = serrated[serrated["source"] == "ebhi_cohort"]
    assert len(every) == 206 and every["group"].nunique() == 168  # PROVENANCE.md: 206 images, 168 patients


def test_ebhi_study_subset_keeps_whole_patients_and_both_grades(shared_data):
    from xpath.datasets import ebhi_study_table

    full = ebhi_study_table(root=shared_data)
    sub = ebhi_study_table(root=shared_data, subset=60, seed=1)
    assert 60 <= len(sub) <= 70 and set(sub["label"]) == {0, 1}
    sizes = full.groupby("group").size()
    got = sub.groupby("group").size()
    assert (got.to_numpy() == sizes[got.index].to_numpy()).all()
    assert sub.equals(ebhi_study_table(root=shared_data, subset=60, seed=1))
    with pytest.raises(ValueError, match="subset"):
        ebhi_study_table(root=shared_data, subset=2)
