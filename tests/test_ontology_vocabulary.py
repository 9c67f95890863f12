"""The vocabulary file: dataset classes → labels, synonyms, parsing; consistent with the loaders."""

from __future__ import annotations

import subprocess
import sys

import pytest

from xpath.ontology import UNSPECIFIED, Label, Vocabulary, known_labels, load_vocabulary


@pytest.fixture(scope="module")
def voc():
    return load_vocabulary()


@pytest.mark.parametrize(("dataset", "native", "region", "expected"), [
    ("pannuke", "Neoplastic", "Breast", Label("breast", "nuclei", "tumor")),
    ("pannuke", "Inflammatory", "HeadNeck", Label("head and neck", "nuclei", "inflammatory")),
    ("pannuke", "Connective", "Bile-duct", Label("bile duct", "nuclei", "connective")),
    ("monuseg", "Nucleus", None, Label(UNSPECIFIED, "nuclei", "nucleus")),
    ("kumar", "nuclei", None, Label(UNSPECIFIED, "nuclei", "nucleus")),
    ("consep", "dysplastic/malignant epithelial", None, Label("colon", "nuclei", "tumor")),
    ("consep", "fibroblast", None, Label("colon", "nuclei", "spindle-shaped")),
    ("lizard", "Lymphocyte", None, Label("colon", "nuclei", "inflammatory")),
    ("conic", "plasma", None, Label("colon", "nuclei", "plasma cell")),
    ("monusac", "Macrophage", "Lung", Label("lung", "nuclei", "macrophage")),
    ("glas", "malignant", None, Label("colon", "tissue", "gland")),
    ("crag", "gland", None, Label("colon", "tissue", "gland")),
    ("bcss", "lymphocytic_infiltrate", None, Label("breast", "tissue", "inflammatory")),
    ("bcss", "necrosis_or_debris", None, Label("breast", "tissue", "necrosis")),
    ("cpm17", "Nucleus", None, Label(UNSPECIFIED, "nuclei", "nucleus")),
    ("tnbc", "Nucleus", None, Label("breast", "nuclei", "nucleus")),
    ("nuinsseg", "Nucleus", "renal", Label("kidney", "nuclei", "nucleus")),
    ("nucls", "sTIL", None, Label("breast", "nuclei", "inflammatory")),
    ("ebhi_seg", "Adenocarcinoma", None, Label("colon", "tissue", "gland")),
    ("cryonuseg", "Nucleus", None, Label(UNSPECIFIED, "nuclei", "nucleus")),
])
def test_dataset_classes(voc, dataset, native, region, expected):
    assert voc.dataset_label(dataset, native, region=region) == expected


def test_ignored_classes_and_errors(voc):
    assert voc.dataset_label("bcss", "exclude") is None
    assert voc.dataset_label("pannuke", "background") is None  # case-insensitive
    with pytest.raises(ValueError, match="unknown dataset 'camelyon'.*pannuke"):
        voc.dataset_label("camelyon", "tumor")
    with pytest.raises(ValueError, match="unknown class 'Mitosis' of dataset 'pannuke'"):
        voc.dataset_label("pannuke", "Mitosis")
    with pytest.raises(ValueError, match="unknown region 'mars'"):
        voc.normalize_region("mars")
    with pytest.raises(ValueError, match="defined at structure levels"):
        voc.label("colon", "nuclei", "gland")


@pytest.mark.parametrize(("term", "obj"), [
    ("lymphocytes", "inflammatory"), ("Tumour", "tumor"), ("neoplastic", "tumor"), ("malignant epithelial", "tumor"),
    ("TILs", "inflammatory"), ("fibroblasts", "spindle-shaped"), ("crypts", "gland"), ("adipose", "fat"),
])
def test_synonyms(voc, term, obj):
    assert voc.normalize_object(term) == obj


def test_loader_labels_are_in_the_vocabulary(voc):
    """Every label xpath.datasets gives to the shared sets is a known label (incl. 'all nuclei')."""
    from xpath.datasets import DATASETS

    known = set(known_labels())
    for name, spec in DATASETS.items():
        for label in spec.classes.values():
            assert label in known, (name, label)
            if label.is_instance_level:
                assert Label(label.region, label.structure, "nucleus") in known


def test_every_known_label_round_trips_through_its_prompt(voc):
    labels = voc.known_labels()
    assert 100 < len(labels) < 400
    for label in labels:
        assert voc.parse_prompt(label.prompt) == label
        assert voc.lookup(label.prompt) == label


@pytest.mark.parametrize(("text", "expected"), [
    ("tumour nuclei in colorectal tissue", Label("colon", "nuclei", "tumor")),
    ("tumor nuclei", Label(UNSPECIFIED, "nuclei", "tumor")),  # "nuclei" (6 letters) is a structure word here
    ("cell nuclei", Label(UNSPECIFIED, "nuclei", "nucleus")),
    ("nuclei", Label(UNSPECIFIED, "nuclei", "nucleus")),
    ("lymphocytes", Label(UNSPECIFIED, "nuclei", "inflammatory")),
    ("glands", Label(UNSPECIFIED, "tissue", "gland")),
    ("stroma in breast", Label("breast", "tissue", "stroma")),
    ("inflammatory tissue in the lung", Label("lung", "tissue", "inflammatory")),
    ("a red sports car", None),
])
def test_lookup_free_text(voc, text, expected):
    assert voc.lookup(text) == expected


def test_conflicting_synonyms_are_refused():
    data = {"regions": {"colon": []}, "datasets": {},
            "objects": {"a": {"structures": ["nuclei"], "synonyms": ["x"]},
                        "b": {"structures": ["nuclei"], "synonyms": ["X "]}}}
    with pytest.raises(ValueError, match="object term 'X ' maps to both 'a' and 'b'"):
        Vocabulary(data)


def test_ontology_imports_no_heavy_module():
    code = ("import sys, xpath.ontology as o; o.load_vocabulary(); "
            "print(sorted({'torch', 'transformers'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_word_stems_come_from_the_vocabulary_file(voc):
    """The one list of class words: object stems beside the synonyms, structure stems for prompts without an object."""
    assert voc.stems("inflammatory") == ("lymph", "immune", "inflamm", "til")
    assert voc.stems("stroma") == ("strom",) and voc.stems("fat") == ()
    assert "cyte" in voc.stems("cell") and "nucle" in voc.stems("nuclei")
    with pytest.raises(ValueError, match="unknown object or structure 'cat'"):
        voc.stems("cat")
    # checked in the file's order: nuclei, then tissue, then cell
    assert [voc.stem_structure(t) for t in ("nucleoli", "lumen", "keratinocytes", "a cat")] == [
        "nuclei", "tissue", "cell", None]
    with pytest.raises(ValueError, match="structure_stems name unknown structures"):
        Vocabulary({"regions": {}, "datasets": {}, "objects": {}, "structure_stems": {"organ": ["x"]}})
