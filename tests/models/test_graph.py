"""GraphDiagnosticModel: a planted cell-graph task, attributions on planted cells, input forms."""

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.spatial import Delaunay

from xpath.models import GraphDiagnosticModel


def _graph(rng, label):
    """A Delaunay cell graph; label 1 plants a cluster of 8 cells with high feature 0, label 0 a
    decoy cluster with high feature 1 (so the class is not just 'a cluster exists')."""
    n = int(rng.integers(30, 50))
    pos = rng.uniform(0, 100, (n, 2))
    x = rng.normal(size=(n, 4)).astype(np.float32)
    s = Delaunay(pos).simplices
    e = np.concatenate([s[:, [0, 1]], s[:, [1, 2]], s[:, [0, 2]]])
    A = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    A = ((A + A.T) > 0).astype(np.float32).tocsr()
    planted = np.argsort(np.linalg.norm(pos - pos[rng.integers(n)], axis=1))[:8]
    x[planted, 0 if label == 1 else 1] += 2.5
    return (A, x, label), planted


@pytest.fixture(scope="module")
def task():
    rng = np.random.default_rng(0)
    return [_graph(rng, i % 2) for i in range(160)]


@pytest.fixture(scope="module")
def model(task):
    return GraphDiagnosticModel(epochs=20, n_threads=1, seed=0).fit([g for g, _ in task[:120]])


def test_learns_the_planted_class(task, model):
    y = np.array([g[2] for g, _ in task[120:]])
    assert (model.predict([g for g, _ in task[120:]]) == y).mean() >= 0.9
    assert model.loss_curve_[-1] < 0.5 * model.loss_curve_[0]


def test_attributions_point_at_the_planted_cells(task, model):
    overlap = []
    for g, planted in task[120:]:
        if g[2] == 1:
            a = model.node_attributions(g, target=1)
            overlap.append(len(set(np.argsort(-a)[:8]) & set(planted)) / 8)
    assert np.mean(overlap) >= 0.6  # chance is ~8/40 = 0.2


def test_gnnexplainer_style_mask_finds_the_planted_cells(task, model):
    overlap = []
    for g, planted in task[120:136]:
        if g[2] == 1:
            m = model.node_attributions(g, target=1, method="mask")
            assert ((m > 0) & (m < 1)).all()
            overlap.append(len(set(np.argsort(-m)[:8]) & set(planted)) / 8)
    assert np.mean(overlap) >= 0.5  # chance is ~0.2


def test_integrated_gradients_completeness(task, model):
    (A, x, _), _ = task[121]
    a = model.node_attributions((A, x), target=1, steps=64)
    baseline = np.tile(model.feature_mean_, (x.shape[0], 1))  # standardised zero
    gap = model.decision_function([(A, x)])[0, 1] - model.decision_function([(A, baseline)])[0, 1]
    assert a.sum() == pytest.approx(gap, rel=0.05)
    for method in ("grad_x_input", "saliency"):
        assert model.node_attributions((A, x), method=method).shape == (x.shape[0],)


def test_pyg_data_and_csr_tuples_are_the_same_input(task, model):
    import torch
    from torch_geometric.data import Data

    (A, x, _), _ = task[130]
    coo = A.tocoo()
    data = Data(
        x=torch.from_numpy(x),
        edge_index=torch.from_numpy(np.stack([coo.row, coo.col]).astype(np.int64)),
    )
    np.testing.assert_allclose(
        model.predict_proba([data]), model.predict_proba([(A, x)]), atol=1e-6
    )


def test_cell_graphs_from_biomarkers(rng, model):
    from xpath.biomarkers import build_graph_delaunay

    pos = rng.uniform(0, 100, (40, 2))
    x = rng.normal(size=(40, 4)).astype(np.float32)
    cg = build_graph_delaunay(pos)
    p1 = model.predict_proba([(cg, x)])
    p2 = model.predict_proba([cg.to_pyg(features=x)])
    np.testing.assert_allclose(p1, p2, atol=1e-6)
    a = model.node_attributions((cg, x))
    assert a.shape == (40,) and np.isfinite(a).all()
    with pytest.raises(ValueError, match="node feature matrix"):
        model.predict([cg])  # a CellGraph without features


@pytest.mark.parametrize("conv", ["gat", "sage"])
def test_other_layers_train(task, conv):
    m = GraphDiagnosticModel(conv, epochs=2, hidden=16, n_threads=1).fit([g for g, _ in task[:40]])
    p = m.predict_proba([g for g, _ in task[40:50]])
    assert p.shape == (10, 2) and np.allclose(p.sum(1), 1)


def test_bad_input(task):
    (A, x, _), _ = task[0]
    with pytest.raises(ValueError, match="conv must be one of"):
        GraphDiagnosticModel("cheb").fit([g for g, _ in task[:4]])
    with pytest.raises(ValueError, match="same number of node features"):
        GraphDiagnosticModel(epochs=1).fit([(A, x, 0), (A, x[:, :3], 1)])
    with pytest.raises(ValueError, match="refers to nodes outside"):
        GraphDiagnosticModel(epochs=1).fit([(np.array([[0, 99], [1, 0]]), x, 0), (A, x, 1)])
    with pytest.raises(ValueError, match="single class"):
        GraphDiagnosticModel(epochs=1).fit([(A, x, 0), (A, x, 0)])
    with pytest.raises(TypeError, match="must be a torch_geometric Data"):
        GraphDiagnosticModel(epochs=1).fit([x, x], y=[0, 1])


def test_importing_models_explain_plotting_does_not_import_torch():
    code = "import sys, xpath.models, xpath.explain, xpath.plotting; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "False"
