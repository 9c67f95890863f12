"""The examples in docs/pipeline.md and the pipeline's docstrings run and print what they say."""

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def test_pipeline_page_examples():
    result = doctest.testfile(str(ROOT / "docs" / "pipeline.md"), module_relative=False, encoding="utf-8",
                              optionflags=FLAGS)
    assert result.attempted > 10 and result.failed == 0


@pytest.mark.parametrize("name", ["xpath.io._geojson", "xpath.io._ometiff", "xpath.io._tables", "xpath.io._polygons",
                                  "xpath.pipeline._cohort", "xpath.pipeline._tissue", "xpath.pipeline._slide",
                                  "xpath.pipeline._analysis"])
def test_module_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=FLAGS)
    assert result.attempted > 0 and result.failed == 0
