"""Category-balanced sampling: per-tile weights and an infinite, deterministic, DDP-aware stream.

:class:`BalancedSampler` draws with replacement, splits one global stream across DDP ranks
and can restart at any position; each draw carries its own augmentation seed, so a resumed
run sees the same batches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["BalancedSampler", "balance_weights"]


def _stable_seed(*parts) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def balance_weights(tile_labels: Sequence[Sequence], *, by: str = "label", sources: Sequence[str] | None = None,
                    power: float = 1.0) -> np.ndarray:
    """Sampling weight per tile for category-balanced training.

    ``by="label"``: each label gets the same total mass, a tile's weight is the mean over
    its labels of ``1 / n_label**power`` (``n_label`` = tiles with that label);
    ``by="source"``: each source (dataset) gets the same mass (``sources`` required);
    ``by="none"``: uniform.
    """
    n = len(tile_labels)
    if by == "none":
        return np.ones(n)
    if by == "source":
        if sources is None:
            raise ValueError("by='source' needs sources")
        _, inverse, counts = np.unique(np.asarray(sources), return_inverse=True, return_counts=True)
        return 1.0 / counts[inverse].astype(float) ** power
    if by != "label":
        raise ValueError(f"by must be 'label', 'source' or 'none', got {by!r}")
    counts: dict = {}
    for labs in tile_labels:
        for lab in sorted(set(labs)):
            counts[lab] = counts.get(lab, 0) + 1
    w = np.array([np.mean([1.0 / counts[lab] ** power for lab in sorted(set(labs))]) if labs else 0.0
                  for labs in tile_labels])
    if not (w > 0).any():
        raise ValueError("no tile has a label to sample")
    return w


@dataclass
class BalancedSampler(torch.utils.data.Sampler):
    """Infinite, deterministic, DDP-aware weighted sampling with replacement.

    The global stream is cut into epochs of ``epoch_size`` draws; epoch ``e`` is drawn
    with ``torch.multinomial`` from a generator seeded by ``(seed, e)``. Rank ``r`` of
    ``num_replicas`` takes global positions ``r, r + R, r + 2R, ...``, starting at its
    local position ``start`` (draws already consumed: what a resumed run skips). Each
    draw is yielded as ``(tile_index, item_seed)`` with ``item_seed`` a hash of
    ``(seed, global_position)``, so augmentation does not depend on workers or restarts.
    """

    weights: np.ndarray
    seed: int = 0
    num_replicas: int = 1
    rank: int = 0
    start: int = 0
    epoch_size: int | None = None
    _epoch_cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, np.float64)
        if w.ndim != 1 or w.size == 0 or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
            raise ValueError("weights must be a non-empty 1-D array of finite non-negative numbers with a positive sum")
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank must be in [0, {self.num_replicas}), got {self.rank}")
        self.weights = w
        self.epoch_size = int(self.epoch_size or w.size)

    def _epoch(self, e: int) -> np.ndarray:
        if e not in self._epoch_cache:
            self._epoch_cache.clear()
            g = torch.Generator().manual_seed(_stable_seed("epoch", self.seed, e))
            draw = torch.multinomial(torch.as_tensor(self.weights), self.epoch_size, replacement=True, generator=g)
            self._epoch_cache[e] = draw.numpy()
        return self._epoch_cache[e]

    def draw(self, local_position: int) -> tuple[int, int]:
        """The ``(tile_index, item_seed)`` at this rank's local position."""
        k = local_position * self.num_replicas + self.rank  # global position
        e, off = divmod(k, self.epoch_size)
        return int(self._epoch(e)[off]), _stable_seed("item", self.seed, k)

    def __iter__(self):
        j = self.start
        while True:
            yield self.draw(j)
            j += 1
