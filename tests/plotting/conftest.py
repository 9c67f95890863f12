"""One BLAS/OpenMP thread per test: on a shared 2-core machine, OpenMP spin-waiting in scikit-learn's
HistGradientBoosting makes a 1-s fit take 40 s when other processes hold the cores."""

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with threadpool_limits(limits=1):
        yield
