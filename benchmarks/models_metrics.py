"""C-index and validation cost: xpath's O(n log n) Harrell/Uno C against lifelines, side by side.

For each cohort size it prints the median wall time (over --repeats runs, after one warm-up that
also compiles the numba kernel) of

- ``xpath.models.concordance_harrell`` vs ``lifelines.utils.concordance_index`` (the baseline;
  the values are checked to agree to 1e-9),
- ``xpath.models.concordance_uno`` (IPCW, no lifelines counterpart),
- a 200-resample bootstrap CI of Harrell's C,

and the ratio baseline / xpath.

    .venv/bin/python benchmarks/models_metrics.py [--sizes 1000 10000 100000] [--repeats 5]
"""

from __future__ import annotations

import argparse

import numpy as np
from _timing import median_seconds
from lifelines.utils import concordance_index

from xpath.models import bootstrap_ci, concordance_harrell, concordance_uno


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(
        f"{'n':>8} {'lifelines C (s)':>16} {'xpath C (s)':>12} {'ratio':>7} {'xpath Uno (s)':>14} "
        f"{'bootstrap200 (s)':>17}"
    )
    for n in args.sizes:
        risk = rng.normal(size=n)
        t = np.round(rng.exponential(np.exp(-risk)) * 100)  # ties in time, as in real follow-up
        e = rng.integers(0, 2, n)
        ours = concordance_harrell(risk, t, e)
        ref = concordance_index(t, -risk, e)
        assert abs(ours - ref) < 1e-9, (ours, ref)
        r, tt, ee = risk, t, e
        t_ref = median_seconds(lambda r=r, tt=tt, ee=ee: concordance_index(tt, -r, ee), args.repeats)
        t_ours = median_seconds(
            lambda r=r, tt=tt, ee=ee: concordance_harrell(r, tt, ee), args.repeats
        )
        t_uno = median_seconds(lambda r=r, tt=tt, ee=ee: concordance_uno(r, tt, ee), args.repeats)
        t_boot = median_seconds(
            lambda r=r, tt=tt, ee=ee: bootstrap_ci(concordance_harrell, r, tt, ee, n_bootstrap=200),
            1,
        )
        print(
            f"{n:>8} {t_ref:>16.4f} {t_ours:>12.4f} {t_ref / t_ours:>7.1f} "
            f"{t_uno:>14.4f} {t_boot:>17.3f}"
        )


if __name__ == "__main__":
    main()
