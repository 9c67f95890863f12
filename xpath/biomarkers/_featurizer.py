"""``MorphologyFeaturizer``: per-image biomarker vectors as a scikit-learn transformer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from tqdm.auto import tqdm

from ._aggregate import aggregate
from ._table import cell_table

__all__ = ["MorphologyFeaturizer"]


class MorphologyFeaturizer(TransformerMixin, BaseEstimator):
    """Turn images (label image, optionally with RGB) into fixed-length per-image feature vectors.

    Each sample is a label image ``(H, W)`` or a pair ``(labels, image)``; it becomes the
    ``stats`` of every per-object feature of :func:`cell_table` (plus the object count).
    Works inside a ``sklearn.pipeline.Pipeline``.

    Parameters
    ----------
    mpp : float
        µm per pixel of every sample.
    properties : sequence of str, optional
        Feature families (see :func:`cell_table`; ``None``: every family each sample allows).
    stats : sequence of str
        Statistics over objects (see :func:`aggregate`).
    progress : bool
        Show a tqdm progress bar over the images.

    Attributes
    ----------
    feature_names_in_ : numpy.ndarray
        Not used (inputs are images).
    feature_names_out_ : numpy.ndarray
        Output column names, fixed at ``fit``.

    Examples
    --------
    >>> lab = np.zeros((32, 32), np.int32); lab[4:10, 4:10] = 1; lab[20:24, 20:28] = 2
    >>> f = MorphologyFeaturizer(mpp=0.5, properties=("shape",), stats=("mean",)).fit([lab])
    >>> f.transform([lab]).shape[0]
    1
    """

    def __init__(self, mpp: float = 0.5, properties: Sequence[str] | None = None,
                 stats: Sequence[str] = ("mean", "std", "q50"), progress: bool = False):
        self.mpp = mpp
        self.properties = properties
        self.stats = stats
        self.progress = progress

    def _table(self, samples) -> pd.DataFrame:
        tables = []
        for i, s in enumerate(tqdm(samples, disable=not self.progress, desc="images")):  # not over objects
            labels, image = (s if isinstance(s, tuple) else (s, None))
            t = cell_table(labels, image, mpp=self.mpp, properties=self.properties)
            tables.append(t.assign(_sample=i))
        return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame({"_sample": []})

    def _features(self, samples) -> pd.DataFrame:
        samples = list(samples)
        agg = aggregate(self._table(samples), "_sample", stats=self.stats, per_class=False)
        return agg.reindex(range(len(samples)))

    def fit(self, X, y=None):
        """Fix the output feature names from ``X``; returns ``self``."""
        feats = self._features(X)
        self.feature_names_out_ = np.array(feats.columns, dtype=object)
        return self

    def transform(self, X) -> np.ndarray:
        """``(n_samples, n_features)`` ``float64``; images without objects give count 0 and NaN statistics."""
        if not hasattr(self, "feature_names_out_"):
            raise ValueError("MorphologyFeaturizer is not fitted; call fit first")
        feats = self._features(X).reindex(columns=self.feature_names_out_)
        feats["count"] = feats["count"].fillna(0)
        return feats.to_numpy(np.float64)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return self.feature_names_out_.copy()
