"""The examples of docs/segmentation_model.md and of the model modules' docstrings run as written."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def test_model_docs_page():
    result = doctest.testfile(str(ROOT / "docs" / "segmentation_model.md"), module_relative=False,
                              encoding="utf-8", optionflags=FLAGS)
    assert result.attempted > 20 and result.failed == 0


@pytest.mark.parametrize("name", ["xpath.segmentation._registry", "xpath.ontology"])
def test_module_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=FLAGS)
    assert result.attempted > 0 and result.failed == 0
