"""A synthetic patient cohort with planted biomarker effects on survival and on diagnosis.

Every patient has a latent standard-normal value per feature. Survival times follow a Weibull
proportional-hazards model whose log hazard ratios (per SD of the latent) are planted for a few
named features; the diagnosis follows a logistic model with planted log odds ratios; the other
("null") features have no effect at all. Features are reported on realistic scales
(``value = loc + scale * latent``), optionally per image with image-level noise and patient ids,
so that biomarker screens, Cox models and SHAP rankings can be checked against the truth.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["SyntheticCohort", "synthetic_cohort"]

# name: (loc, scale) of the reported value; units follow the feature-name convention
_INFORMATIVE = {
    "nucleus.shape.area_um2.mean": (42.0, 9.0),
    "nucleus.shape.eccentricity.mean": (0.62, 0.07),
    "nucleus.stain.hematoxylin.mean": (0.85, 0.12),
    "region.density_per_mm2.lymphocyte.tumour": (900.0, 250.0),
    "cell.spatial.degree.mean": (5.6, 0.5),
}
DEFAULT_LOG_HR = {
    "nucleus.shape.area_um2.mean": 0.7,
    "nucleus.shape.eccentricity.mean": 0.5,
    "nucleus.stain.hematoxylin.mean": 0.45,
    "region.density_per_mm2.lymphocyte.tumour": -0.6,
    "cell.spatial.degree.mean": -0.4,
}
DEFAULT_LOG_OR = {
    "nucleus.shape.area_um2.mean": 1.2,
    "nucleus.shape.eccentricity.mean": 0.9,
    "nucleus.stain.hematoxylin.mean": 0.8,
    "region.density_per_mm2.lymphocyte.tumour": -1.0,
    "cell.spatial.degree.mean": -0.7,
}


@dataclass(frozen=True)
class SyntheticCohort:
    """A synthetic cohort and its planted truth.

    Attributes
    ----------
    X : pandas.DataFrame
        ``(n_rows, n_features)`` biomarker table (one row per image; per patient when
        ``images_per_patient=1``).
    durations, events : (n_rows,) ndarray
        Follow-up time (months) and event indicator (1 = event) of each row's patient.
    y : (n_rows,) ndarray of int
        Diagnosis (1 = positive) of each row's patient.
    groups : (n_rows,) ndarray of int
        Patient id of each row.
    log_hazard_ratios, log_odds_ratios : pandas.Series
        Planted effect per SD of the patient-level latent, one per column of ``X`` (0 for nulls).
    params : dict
        The arguments that made the cohort.
    """

    X: pd.DataFrame
    durations: np.ndarray
    events: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    log_hazard_ratios: pd.Series
    log_odds_ratios: pd.Series
    params: dict = field(default_factory=dict)

    @property
    def informative(self) -> list[str]:
        """Features with a planted effect on survival or diagnosis."""
        mask = (self.log_hazard_ratios != 0) | (self.log_odds_ratios != 0)
        return list(self.X.columns[mask.to_numpy()])

    @property
    def null_features(self) -> list[str]:
        """Features with no effect at all."""
        return [c for c in self.X.columns if c not in self.informative]

    def frame(self) -> pd.DataFrame:
        """``X`` with ``duration``, ``event``, ``diagnosis`` and ``patient`` columns appended."""
        return self.X.assign(
            duration=self.durations, event=self.events, diagnosis=self.y, patient=self.groups
        )


def _bisect(f, lo: float, hi: float, target: float, n: int = 60) -> float:
    """Solve the increasing function ``f(x) = target`` on ``[lo, hi]`` by bisection."""
    for _ in range(n):
        mid = 0.5 * (lo + hi)
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def synthetic_cohort(
    n_patients: int = 400,
    *,
    n_null: int = 50,
    log_hazard_ratios: Mapping[str, float] | None = None,
    log_odds_ratios: Mapping[str, float] | None = None,
    censoring: float = 0.3,
    prevalence: float = 0.4,
    weibull_shape: float = 1.3,
    median_survival: float = 60.0,
    images_per_patient: int = 1,
    image_noise: float = 0.3,
    null_correlation: float = 0.0,
    seed: int = 0,
) -> SyntheticCohort:
    """Make a cohort whose survival and diagnosis depend on chosen features with chosen effects.

    Parameters
    ----------
    n_patients : int
        Number of patients.
    n_null : int
        Number of null features (``null.random.fNN``) with no effect.
    log_hazard_ratios : mapping of str to float, optional
        Planted log hazard ratio per SD for informative features (default: 5 nuclear/immune/graph
        features with log HRs 0.7, 0.5, 0.45, -0.6, -0.4). Names outside the built-in five get
        ``loc=0, scale=1``.
    log_odds_ratios : mapping of str to float, optional
        Planted log odds ratio per SD for the diagnosis (default: 1.2, 0.9, 0.8, -1.0, -0.7 on
        the same features).
    censoring : float in [0, 0.95]
        Target fraction of censored patients (exponential censoring, rate found by bisection).
    prevalence : float in (0, 1)
        Target fraction of diagnosis-positive patients (intercept found by bisection).
    weibull_shape : float
        Shape ``k`` of the Weibull baseline hazard (1 = exponential).
    median_survival : float
        Median survival time (months) of a patient with all latents at 0.
    images_per_patient : int
        Rows per patient; each image's features are the patient's plus ``image_noise`` × N(0, 1)
        on the latent scale.
    null_correlation : float in [0, 1)
        Correlation within blocks of 10 null features (0 = independent).
    seed : int

    Returns
    -------
    SyntheticCohort

    Examples
    --------
    >>> c = synthetic_cohort(200, n_null=10, seed=1)
    >>> c.X.shape, round(float(1 - c.events.mean()), 1)
    ((200, 15), 0.3)
    """
    if not isinstance(n_patients, (int, np.integer)) or n_patients < 10:
        raise ValueError(f"n_patients must be an integer >= 10, got {n_patients!r}")
    if not isinstance(n_null, (int, np.integer)) or n_null < 0:
        raise ValueError(f"n_null must be an integer >= 0, got {n_null!r}")
    if not 0 <= censoring <= 0.95:
        raise ValueError(f"censoring must be a fraction in [0, 0.95], got {censoring!r}")
    if not 0 < prevalence < 1:
        raise ValueError(f"prevalence must be in (0, 1), got {prevalence!r}")
    if not isinstance(images_per_patient, (int, np.integer)) or images_per_patient < 1:
        raise ValueError(f"images_per_patient must be an integer >= 1, got {images_per_patient!r}")
    if not 0 <= null_correlation < 1:
        raise ValueError(f"null_correlation must be in [0, 1), got {null_correlation!r}")
    params = dict(locals())
    rng = np.random.default_rng(seed)
    hr = dict(DEFAULT_LOG_HR if log_hazard_ratios is None else log_hazard_ratios)
    odds = dict(DEFAULT_LOG_OR if log_odds_ratios is None else log_odds_ratios)
    informative = list(dict.fromkeys([*hr, *odds]))
    nulls = [f"null.random.f{i:02d}" for i in range(n_null)]
    names = informative + nulls
    n, p = n_patients, len(names)

    latent = rng.standard_normal((n, p))  # (patients, features)
    if n_null and null_correlation > 0:
        k = len(informative)
        for start in range(0, n_null, 10):
            block = slice(k + start, k + min(start + 10, n_null))
            shared = rng.standard_normal((n, 1))
            latent[:, block] = (
                np.sqrt(null_correlation) * shared
                + np.sqrt(1 - null_correlation) * latent[:, block]
            )
    beta = np.array([hr.get(c, 0.0) for c in names])
    gamma = np.array([odds.get(c, 0.0) for c in names])

    # Weibull PH: S(t | x) = exp(-lam * t^k * exp(eta)), lam set by the median at eta = 0
    eta = latent @ beta
    lam = np.log(2) / median_survival**weibull_shape
    t_event = (-np.log(rng.uniform(size=n)) / (lam * np.exp(eta))) ** (1 / weibull_shape)
    u_cens = rng.exponential(size=n)
    if censoring > 0:
        rate = _bisect(lambda r: float(np.mean(u_cens / r < t_event)), 1e-8, 1e3, censoring)
        t_cens = u_cens / rate
    else:
        t_cens = np.full(n, np.inf)
    durations = np.minimum(t_event, t_cens)
    events = (t_event <= t_cens).astype(np.int64)

    logit = latent @ gamma
    b0 = _bisect(lambda b: float(np.mean(1 / (1 + np.exp(-(b + logit))))), -20, 20, prevalence)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(b0 + logit)))).astype(np.int64)

    patient = np.repeat(np.arange(n), images_per_patient)
    values = latent[patient]
    if images_per_patient > 1:
        values = values + image_noise * rng.standard_normal(values.shape)
    loc = np.array([_INFORMATIVE.get(c, (0.0, 1.0))[0] for c in names])
    scale = np.array([_INFORMATIVE.get(c, (0.0, 1.0))[1] for c in names])
    X = pd.DataFrame(loc + scale * values, columns=names)
    return SyntheticCohort(
        X=X,
        durations=durations[patient],
        events=events[patient],
        y=y[patient],
        groups=patient,
        log_hazard_ratios=pd.Series(beta, index=names, name="log_hr"),
        log_odds_ratios=pd.Series(gamma, index=names, name="log_or"),
        params=params,
    )
