"""Every example in the docstrings of xpath's modules and in docs/*.md runs and prints what it says.

Pages and modules are discovered, so a new page or module is covered without editing this file.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import xpath

ROOT = Path(__file__).resolve().parents[1]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
PAGES = sorted(p.name for p in (ROOT / "docs").glob("*.md") if ">>>" in p.read_text(encoding="utf-8"))
MODULES = sorted(m.name for m in pkgutil.walk_packages(xpath.__path__, "xpath.") if not m.name.endswith("__main__"))


def test_discovery_finds_the_documented_layers():
    assert {"foundation.md", "models.md", "explain.md", "pipeline.md", "biomarkers.md"} <= set(PAGES)
    assert "xpath._types" in MODULES and "xpath.segmentation.metrics" in MODULES


@pytest.mark.parametrize("page", PAGES)
def test_docs_page_examples(page):
    result = doctest.testfile(str(ROOT / "docs" / page), module_relative=False, encoding="utf-8", optionflags=FLAGS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("name", MODULES)
def test_module_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=FLAGS, extraglobs={"np": np, "pd": pd})
    assert result.failed == 0
