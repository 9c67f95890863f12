"""The examples in docs/models.md, docs/explain.md and in the docstrings of these modules run."""

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("page", ["models.md", "explain.md"])
def test_docs_examples(page):
    result = doctest.testfile(
        str(ROOT / "docs" / page), module_relative=False, encoding="utf-8", optionflags=FLAGS
    )
    assert result.attempted > 5 and result.failed == 0


@pytest.mark.parametrize("name", ["xpath.datasets._cohort", "xpath.explain._screen"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=FLAGS)
    assert result.attempted > 0 and result.failed == 0
