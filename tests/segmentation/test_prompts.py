"""resolve_prompt: nearest known labels by text-embedding similarity."""

from __future__ import annotations

import pytest

from xpath.ontology import Label
from xpath.segmentation.prompts import resolve_prompt


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_prompt_is_an_error(text):
    with pytest.raises(ValueError, match="non-empty prompt"):
        resolve_prompt(text)


def test_non_string_is_an_error():
    with pytest.raises(TypeError, match="text must be a str"):
        resolve_prompt(["nuclei"])


@pytest.mark.parametrize(("text", "expected"), [
    ("lymphocytes", ("nuclei", "inflammatory")),
    ("tumour nuclei in breast", ("breast", "nuclei", "tumor")),
    ("nuclei-level epithelial in colon pathology", ("colon", "nuclei", "epithelial")),
    ("glands in colon", ("colon", "tissue", "gland")),
])
def test_nearest_label(text, expected):
    res = resolve_prompt(text, top_k=3)
    got = (res.label.structure, res.label.object) if len(expected) == 2 else (
        res.label.region, res.label.structure, res.label.object)
    assert got == expected, str(res)
    assert len(res.matches) == 3
    assert [s for _, s in res.matches] == sorted((s for _, s in res.matches), reverse=True)
    assert res.similarity > 0.8


def test_exact_canonical_prompt_scores_one():
    res = resolve_prompt("nuclei-level epithelial in colon pathology")
    assert res.similarity == pytest.approx(1.0, abs=1e-4)
    assert res.lexical == Label("colon", "nuclei", "epithelial")


def test_unrelated_text_warns_naming_the_closest_labels():
    with pytest.warns(UserWarning, match=r"not close to any known label.*closest: '.*pathology' \(0\.\d\d\)"):
        res = resolve_prompt("quarterly earnings call transcript")
    assert res.similarity < 0.5


def test_custom_label_set():
    labels = [Label("colon", "tissue", "gland"), Label("breast", "nuclei", "tumor")]
    res = resolve_prompt("malignant epithelial cells", labels=labels, top_k=5)
    assert res.label == Label("breast", "nuclei", "tumor")
    assert len(res.matches) == 2


@pytest.mark.parametrize(("text", "structure"), [
    ("keratinocytes", "cell"),  # no object of the vocabulary: its cell stems ("cyte")
    ("lumen", "tissue"),
    ("nucleoli", "nuclei"),
    ("lymphocytes", "nuclei"),  # an object synonym: inflammatory nuclei
    ("a cat", None),
])
def test_prompt_structure_reads_the_vocabulary_without_a_model(text, structure):
    from xpath.segmentation.prompts import prompt_structure

    assert prompt_structure(text)[1] == structure
