import pytest

from xpath.ontology import Label


def test_prompt_follows_paper_template():
    assert Label("colon", "nuclei", "epithelial").prompt == "nuclei-level epithelial in colon pathology"
    assert Label("colon", "tissue", "gland").is_instance_level is False


@pytest.mark.parametrize("structure", ["organ", "", "Nuclei"])
def test_unknown_structure(structure):
    with pytest.raises(ValueError, match="structure must be one of"):
        Label("colon", structure, "epithelial")


def test_empty_object():
    with pytest.raises(ValueError, match="object must be a non-empty string"):
        Label("colon", "nuclei", " ")
