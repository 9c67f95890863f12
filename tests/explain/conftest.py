"""One BLAS/OpenMP thread per test module.

On a shared 2-core machine, OpenMP spin-waiting in scikit-learn's HistGradientBoosting makes a
0.4-s fit take 20 s when other processes hold the cores.
"""

import pytest
import sklearn.ensemble  # noqa: F401 - loads the OpenMP runtime, so that the limit below reaches it
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with threadpool_limits(limits=1):
        yield
