"""Every plot takes ax=, returns it, draws what the data say, and never calls show()."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import shap
from lifelines.statistics import multivariate_logrank_test
from sklearn.calibration import calibration_curve

from xpath import plotting


@pytest.fixture(autouse=True)
def _no_show(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("plt.show() was called")

    monkeypatch.setattr(plt, "show", boom)
    yield
    plt.close("all")


@pytest.fixture
def explanation(rng):
    values = rng.normal(size=(40, 6)) * np.array([3, 2, 1, 0.5, 0.2, 0.1])
    return shap.Explanation(
        values=values,
        base_values=np.full(40, 0.7),
        data=rng.normal(size=(40, 6)),
        feature_names=[f"f{i}" for i in range(6)],
    )


def test_km_lines_logrank_and_at_risk(rng):
    t = rng.exponential(10, 200)
    e = rng.integers(0, 2, 200)
    g = np.where(rng.uniform(size=200) < 0.5, "low", "high")
    _, ax = plt.subplots()
    out = plotting.plot_km(t, e, g, ax=ax, order=["low", "high"])
    assert out is ax
    labels = [line.get_label() for line in ax.get_lines()]
    assert any(lbl.startswith("low (n=") for lbl in labels) and any(
        lbl.startswith("high (n=") for lbl in labels
    )
    p = multivariate_logrank_test(t, g, e).p_value
    assert ax.get_title() == f"log-rank p = {p:.2g}"
    assert len(ax.figure.axes) >= 2  # the at-risk table axes


def test_forest_rows_in_p_order_and_log_axis():
    table = pd.DataFrame(
        {
            "hr": [2.0, 0.5, 1.1],
            "hr_lower": [1.5, 0.3, 0.9],
            "hr_upper": [2.6, 0.8, 1.3],
            "p": [0.001, 0.01, 0.4],
        },
        index=["a", "b", "c"],
    )
    _, ax = plt.subplots()
    assert plotting.plot_forest(table, ax=ax) is ax
    assert [t.get_text() for t in ax.get_yticklabels()] == ["c", "b", "a"]  # smallest p on top
    assert ax.get_xscale() == "log"
    with pytest.raises(ValueError, match="hr/hr_lower/hr_upper"):
        plotting.plot_forest(table.drop(columns=["hr"]), ax=ax)


def test_shap_bar_is_mean_abs(explanation):
    _, ax = plt.subplots()
    plotting.plot_shap_bar(explanation, ax=ax, max_display=3)
    widths = sorted(p.get_width() for p in ax.patches)
    np.testing.assert_allclose(widths, np.sort(np.abs(explanation.values).mean(0))[-3:])
    assert [t.get_text() for t in ax.get_yticklabels()][-1] == "f0"


def test_beeswarm_one_dot_per_row(explanation):
    _, ax = plt.subplots()
    plotting.plot_shap_beeswarm(explanation, ax=ax, max_display=4)
    n_dots = sum(len(c.get_offsets()) for c in ax.collections)
    assert n_dots == 40 * 4


def test_waterfall_walks_from_base_to_fx(explanation):
    _, ax = plt.subplots()
    plotting.plot_shap_waterfall(explanation, 3, ax=ax, max_display=4)
    bars = ax.patches
    assert len(bars) == 5  # 4 features + "2 other features"
    ends = [b.get_x() + b.get_width() for b in bars]
    starts = [b.get_x() for b in bars]
    assert starts[0] == pytest.approx(0.7)  # bottom bar starts at the base value
    fx = 0.7 + explanation.values[3].sum()
    assert ends[-1] == pytest.approx(fx)  # top bar ends at f(x)
    np.testing.assert_allclose(starts[1:], ends[:-1])  # contiguous walk
    with pytest.raises(ValueError, match="select a class"):
        plotting.plot_shap_waterfall(shap.Explanation(np.zeros((2, 3, 2))), 0)


def test_calibration_points_equal_sklearn(rng):
    p = rng.uniform(size=300)
    y = (rng.uniform(size=300) < p).astype(int)
    _, ax = plt.subplots()
    plotting.plot_calibration(y, p, ax=ax, n_bins=5)
    frac, mean = calibration_curve(y, p, n_bins=5, strategy="quantile")
    model_line = ax.get_lines()[1]
    np.testing.assert_allclose(model_line.get_xdata(), mean)
    np.testing.assert_allclose(model_line.get_ydata(), frac)
    _, ax2 = plt.subplots()
    assert plotting.plot_roc(y, p, ax=ax2) is ax2


def test_survival_calibration_and_stability_and_attributions(rng):
    t = rng.exponential(10, 200)
    e = rng.integers(0, 2, 200)
    _, ax = plt.subplots()
    assert (
        plotting.plot_survival_calibration(rng.uniform(size=200), t, e, 5.0, ax=ax, n_bins=4) is ax
    )
    table = pd.DataFrame({"top_k_frequency": [1.0, 0.2], "stable": [True, False]}, index=["a", "b"])
    _, ax = plt.subplots()
    plotting.plot_stability(table, ax=ax)
    assert [p.get_width() for p in ax.patches] == [0.2, 1.0]
    _, ax = plt.subplots()
    plotting.plot_node_attributions(
        rng.uniform(size=(10, 2)), rng.normal(size=10), edge_index=np.array([[0, 1], [1, 2]]), ax=ax
    )
    with pytest.raises(ValueError, match="pos must be"):
        plotting.plot_node_attributions(np.zeros((3, 2)), np.zeros(4), ax=ax)


def test_default_axes_are_created():
    assert matplotlib.get_backend().lower() == "agg"
    ax = plotting.plot_calibration(np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.2, 0.8]), n_bins=2)
    assert isinstance(ax, matplotlib.axes.Axes)


def test_model_plot_methods_return_axes():
    from xpath.datasets import synthetic_cohort
    from xpath.models import CoxModel, DiagnosticModel

    c = synthetic_cohort(150, n_null=3, seed=0)
    cox = CoxModel(n_bootstrap=5, cv=3).fit(c.X, c.durations, c.events)
    dx = DiagnosticModel("logistic", n_bootstrap=5, cv=3).fit(c.X, c.y)
    for draw in (cox.plot, cox.plot_km, dx.plot, dx.plot_calibration):
        _, ax = plt.subplots()
        assert draw(ax=ax) is ax
    assert [t.get_text() for t in cox.plot(ax=plt.subplots()[1]).get_yticklabels()][
        -1
    ] in c.informative
    with pytest.raises(RuntimeError, match="cv set"):
        CoxModel(cv=None).fit(c.X, c.durations, c.events).plot_km()


def test_one_colour_per_prompt_in_every_overlay_and_in_qupath(tmp_path):
    """Segmentation.plot, plot_overlay (and the other overlays) and the GeoJSON classification agree."""
    import json

    from xpath.io import GeoJSONWriter, class_colour
    from xpath.segmentation import Segmentation

    prompts = ["lymphocytes", "tumour nuclei", "glands"]  # positions 0, 1, 2 but not tab10's colours
    masks = {}
    for k, p in enumerate(prompts):
        m = np.zeros((30, 90), bool)
        m[5:25, 30 * k + 5: 30 * k + 25] = True
        masks[p] = m
    want = {p: np.asarray(class_colour(p), np.float32) / 255 for p in prompts}
    seg = Segmentation(prompts=tuple(prompts), semantic=masks, instances={}, presence=dict.fromkeys(prompts, 1.0),
                       classes=pd.DataFrame(), image_shape=(30, 90))
    drawn = {"Segmentation.plot": seg.plot(alpha=1.0, legend=False).images[0].get_array(),
             "plot_overlay": plotting.plot_overlay(None, masks, alpha=1.0, legend=False).images[0].get_array()}
    for where, rgb in drawn.items():
        for k, p in enumerate(prompts):
            np.testing.assert_allclose(rgb[15, 30 * k + 15][:3], want[p], atol=1e-6, err_msg=f"{where}: {p}")
    labels = np.zeros((30, 90), np.int32)
    for k, p in enumerate(prompts):
        labels[masks[p]] = k + 1
    ax = plotting.plot_instances(None, labels, pd.Series(prompts, index=[1, 2, 3]), alpha=1.0, outline=False)
    for k, p in enumerate(prompts):
        np.testing.assert_allclose(ax.images[0].get_array()[15, 30 * k + 15][:3], want[p], atol=1e-6)
    with GeoJSONWriter(tmp_path / "a.geojson") as writer:
        writer.add_labels(labels, classes=dict(zip([1, 2, 3], prompts)))
    features = json.loads((tmp_path / "a.geojson").read_text())["features"]
    assert {f["properties"]["classification"]["name"]: tuple(f["properties"]["classification"]["color"])
            for f in features} == {p: class_colour(p) for p in prompts}
