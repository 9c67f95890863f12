"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import matplotlib

matplotlib.use("Agg")


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture
def seed(request) -> int:
    """A seed for the test; printed in the failure report so a failure can be replayed."""
    value = int(os.environ.get("XPATH_TEST_SEED", "12345"))
    request.node.user_properties.append(("seed", value))
    return value


@pytest.fixture
def rng(seed) -> np.random.Generator:
    """A seeded numpy Generator (the seed is printed when the test fails)."""
    return np.random.default_rng(seed)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        seeds = [v for k, v in item.user_properties if k == "seed"]
        if seeds:
            report.sections.append(("seed", f"seed = {seeds[0]} (replay with XPATH_TEST_SEED={seeds[0]})"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real annotated sets (``../shared/data`` or ``$XPATH_DATA``).

    Missing data fails the test under CI (``CI=true``) and skips it elsewhere.
    """
    from xpath.datasets import shared_data_dir

    try:
        return shared_data_dir()
    except FileNotFoundError as err:
        if _ci():
            pytest.fail(f"shared data is required under CI: {err}")
        pytest.skip(str(err))


# One BLAS/OpenMP thread for the scikit-learn-heavy folders: on a shared 2-core machine, OpenMP
# spin-waiting in HistGradientBoosting made a 0.4-s fit take 20 s when other processes held the cores.
ONE_THREAD_FOLDERS = ("models", "explain", "plotting")
_TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _one_blas_thread_in_sklearn_folders(request):
    folder = Path(str(request.node.fspath)).resolve().relative_to(_TESTS).parts[0]
    if folder not in ONE_THREAD_FOLDERS:
        yield
        return
    import sklearn.ensemble  # noqa: F401 - loads the OpenMP runtime, so that the limit reaches it
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield
