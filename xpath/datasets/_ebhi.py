"""The EBHI-Seg grading study table: colorectal biopsy images, grade label, patient, pixel size.

Reads ``ebhi_seg/`` (120 images, 20 per category) and ``ebhi_cohort/`` (206 images, with the
patient in ``counts.json``) from :func:`~xpath.datasets.shared_data_dir` into one table with
the columns :class:`xpath.pipeline.ImageStudy` takes: ``path``, ``label``, ``group``, ``mpp``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ._shared import shared_data_dir

__all__ = ["EBHI_GRADES", "EBHI_MPP", "ebhi_study_table"]

#: Category → label of the high- vs low-grade study (1 = high grade); ``None`` = excluded.
EBHI_GRADES: dict[str, int | None] = {
    "Normal": 0,
    "Polyp": 0,
    "Low-grade IN": 0,
    "High-grade IN": 1,
    "Adenocarcinoma": 1,
    "Serrated adenoma": None,  # a separate pathway (serrated), neither grade of the adenoma sequence
}

#: EBHI-Seg states no pixel size; the model card estimates about 1 µm/px from nucleus sizes.
EBHI_MPP = 1.0

_FOLDERS = ("ebhi_seg", "ebhi_cohort")


def _patient(name: str) -> str:
    """The patient id: the source file name's prefix before the first '-' (``GT2001837``)."""
    return name.split("__", 1)[-1].split("-", 1)[0]


def _read_folder(folder: Path) -> pd.DataFrame:
    counts_path = folder / "counts.json"
    if not counts_path.is_file():
        raise FileNotFoundError(f"{counts_path} not found: the EBHI study needs its counts.json")
    rows = []
    for row in json.loads(counts_path.read_text()):
        name = row["name"]
        rows.append({"path": str(folder / "images" / f"{name}.png"), "image": name, "category": row["category"],
                     "group": str(row.get("patient") or _patient(name)), "source": folder.name})
    return pd.DataFrame(rows)


def ebhi_study_table(
    root: str | os.PathLike | None = None,
    *,
    include_serrated: bool = False,
    subset: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """The high- vs low-grade study table of EBHI-Seg biopsies (``ebhi_seg`` + ``ebhi_cohort``).

    High grade (label 1) = High-grade IN + Adenocarcinoma; low grade (label 0) = Normal + Polyp
    + Low-grade IN. Serrated adenomas are excluded (another pathway, not a grade of the
    adenoma–carcinoma sequence) unless ``include_serrated``, when they get ``label = -1`` for
    the caller to decide. Patients are the file-name prefix; ``mpp`` is :data:`EBHI_MPP` (an
    estimate, see the model card).

    Parameters
    ----------
    root : path, optional
        The ``shared/data`` folder; default :func:`shared_data_dir`.
    include_serrated : bool
        Keep the 21 serrated adenomas (label -1).
    subset : int, optional
        Keep about this many images: whole patients drawn at random (``seed``), half from each
        grade, so that a subset still holds every patient's images together.
    seed : int
        Seed of ``subset``.

    Returns
    -------
    pandas.DataFrame
        One row per image: ``path``, ``label`` (int), ``group`` (patient), ``mpp``,
        ``image``, ``category``, ``source``; sorted by ``source`` then ``image``.

    Examples
    --------
    >>> table = ebhi_study_table()  # doctest: +SKIP
    >>> table["label"].value_counts().to_dict()  # doctest: +SKIP
    {0: 182, 1: 123}
    """
    if subset is not None and (not isinstance(subset, (int, np.integer)) or subset < 4):
        raise ValueError(f"subset must be an integer >= 4 or None, got {subset!r}")
    base = Path(root) if root is not None else shared_data_dir()
    missing = [str(base / f) for f in _FOLDERS if not (base / f).is_dir()]
    if missing:
        raise FileNotFoundError(f"EBHI study folders not found: {missing}")
    table = pd.concat([_read_folder(base / f) for f in _FOLDERS], ignore_index=True)
    unknown = sorted(set(table["category"]) - set(EBHI_GRADES))
    if unknown:
        raise ValueError(f"unknown EBHI categories {unknown}; known: {sorted(EBHI_GRADES)}")
    table["label"] = table["category"].map(lambda c: -1 if EBHI_GRADES[c] is None else EBHI_GRADES[c]).astype(int)
    if not include_serrated:
        table = table[table["label"] >= 0]
    table["mpp"] = EBHI_MPP
    table = table[["path", "label", "group", "mpp", "image", "category", "source"]]
    if subset is not None:
        table = _patient_subset(table, subset, seed)
    return table.sort_values(["source", "image"]).reset_index(drop=True)


def _patient_subset(table: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """About ``n`` images of whole patients, half from each label, drawn at random."""
    rng = np.random.default_rng(seed)
    keep = []
    labels = sorted(table["label"].unique())
    for k, label in enumerate(labels):
        want = n // len(labels) + (1 if k < n % len(labels) else 0)
        part = table[table["label"] == label]
        patients = part["group"].unique()
        sizes = part.groupby("group").size()
        taken = 0
        for patient in rng.permutation(patients):
            if taken >= want:
                break
            keep.append(patient)
            taken += int(sizes[patient])
    return table[table["group"].isin(keep)]
