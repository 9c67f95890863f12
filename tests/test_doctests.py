"""The examples in docstrings and in docs/*.md run and print what they say."""

import doctest
import importlib
from pathlib import Path

import pytest

MODULES = ["xpath._types", "xpath.ontology", "xpath.datasets._samples", "xpath.datasets._synthetic"]
DOCS = ["foundation.md"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", MODULES)
def test_module_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0


@pytest.mark.parametrize("page", DOCS)
def test_docs_examples(page):
    result = doctest.testfile(str(ROOT / "docs" / page), module_relative=False, encoding="utf-8",
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
