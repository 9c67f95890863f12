"""``GraphDiagnosticModel``: a graph-level classifier on cell graphs (torch-geometric, CPU).

Each tissue sample is a graph whose nodes are cells (features from ``xpath.biomarkers``) and
whose edges are spatial neighbours. A few message-passing layers (GCN, GAT or GraphSAGE) are
followed by a global pooling and a linear head. :meth:`GraphDiagnosticModel.node_attributions`
says which cells drove a decision (integrated gradients, gradient × input or saliency), so the
explanation maps back onto the tissue.

torch is imported inside the methods only: importing this module never imports torch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from .._types import check_labels_1d

__all__ = ["GraphDiagnosticModel"]

logger = logging.getLogger(__name__)

CONVS = ("gcn", "gat", "sage")
POOLINGS = ("mean", "max", "add", "mean_max")
ATTRIBUTIONS = ("integrated_gradients", "grad_x_input", "saliency", "mask")


def _to_data(graph, index: int):
    """One graph as ``torch_geometric.data.Data`` with float ``x`` and long ``edge_index``.

    Accepted: ``Data``; an object with ``to_pyg()``; a tuple ``(cell_graph, features[, label])``
    where ``cell_graph`` has ``to_pyg(features=...)`` (``xpath.biomarkers.CellGraph``); a tuple
    ``(connectivity, features[, label])`` where connectivity is a scipy sparse ``(N, N)`` matrix
    (CSR) or a ``(2, E)`` integer edge index and features an ``(N, F)`` array.
    """
    import scipy.sparse as sp
    import torch
    from torch_geometric.data import Data

    if isinstance(graph, Data):
        data = graph
    elif hasattr(graph, "to_pyg"):
        data = graph.to_pyg()
    elif isinstance(graph, tuple) and len(graph) in (2, 3) and hasattr(graph[0], "to_pyg"):
        data = graph[0].to_pyg(features=graph[1])  # (CellGraph, node features[, label])
        if len(graph) == 3:
            data.y = torch.tensor([graph[2]])
    elif isinstance(graph, tuple) and len(graph) in (2, 3):
        conn, feats = graph[0], np.asarray(graph[1], np.float32)
        if feats.ndim != 2:
            raise ValueError(f"graphs[{index}] features must be (N, F), got shape {feats.shape}")
        if sp.issparse(conn):
            if conn.shape != (feats.shape[0], feats.shape[0]):
                raise ValueError(
                    f"graphs[{index}] connectivity must be "
                    f"({feats.shape[0]}, {feats.shape[0]}), got {conn.shape}"
                )
            coo = sp.coo_matrix(conn)
            ei = np.stack([coo.row, coo.col]).astype(np.int64)
        else:
            ei = np.asarray(conn, np.int64)
            if ei.ndim != 2 or ei.shape[0] != 2:
                raise ValueError(f"graphs[{index}] edge index must be (2, E), got shape {ei.shape}")
        data = Data(x=torch.from_numpy(feats), edge_index=torch.from_numpy(ei))
        if len(graph) == 3:
            data.y = torch.tensor([graph[2]])
    else:
        raise TypeError(
            f"graphs[{index}] must be a torch_geometric Data, an object with to_pyg(), or a tuple "
            f"(connectivity, features[, label]); got {type(graph).__name__}"
        )
    if getattr(data, "x", None) is None or data.x.dim() != 2:
        raise ValueError(f"graphs[{index}] needs a node feature matrix x of shape (N, F)")
    if data.x.shape[0] == 0:
        raise ValueError(f"graphs[{index}] has no nodes")
    ei = data.edge_index
    if ei is not None and ei.numel() and (int(ei.max()) >= data.x.shape[0] or int(ei.min()) < 0):
        raise ValueError(
            f"graphs[{index}] edge_index refers to nodes outside 0..{data.x.shape[0] - 1}"
        )
    return data


def _build_net(
    in_dim: int,
    n_classes: int,
    *,
    conv: str,
    hidden: int,
    layers: int,
    pooling: str,
    dropout: float,
):
    import torch
    from torch import nn
    from torch_geometric.nn import (
        GATConv,
        GCNConv,
        SAGEConv,
        global_add_pool,
        global_max_pool,
        global_mean_pool,
    )

    def make(i, o):
        if conv == "gcn":
            return GCNConv(i, o, add_self_loops=True)
        if conv == "gat":
            return GATConv(i, o, heads=1, add_self_loops=True)
        return SAGEConv(i, o)

    class GraphNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.encode = nn.Linear(in_dim, hidden)
            self.convs = nn.ModuleList([make(hidden, hidden) for _ in range(layers)])
            self.norms = nn.ModuleList([nn.LayerNorm(hidden) for _ in range(layers)])
            width = 2 * hidden if pooling == "mean_max" else hidden
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, n_classes))

        def forward(self, x, edge_index, batch):
            h = torch.relu(self.encode(x))  # (N, hidden)
            for conv_, norm in zip(self.convs, self.norms, strict=True):
                h = h + torch.relu(norm(conv_(h, edge_index)))  # residual, (N, hidden)
            if pooling == "mean":
                g = global_mean_pool(h, batch)
            elif pooling == "max":
                g = global_max_pool(h, batch)
            elif pooling == "add":
                g = global_add_pool(h, batch)
            else:
                g = torch.cat(
                    [global_mean_pool(h, batch), global_max_pool(h, batch)], dim=1
                )  # (B, 2*hidden)
            return self.head(g)  # (B, n_classes) logits

    return GraphNet()


@contextmanager
def _threads(n: int | None):
    """Use ``n`` torch CPU threads inside the block, then restore the previous setting."""
    import torch

    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class GraphDiagnosticModel(ClassifierMixin, BaseEstimator):
    """Graph-level classifier for cell graphs with node-level attributions.

    Parameters
    ----------
    conv : {"gcn", "gat", "sage"}
        Message-passing layer: ``GCNConv``, ``GATConv`` or ``SAGEConv``.
    hidden : int
        Width of the node embeddings.
    layers : int
        Number of message-passing layers (each with a residual connection and LayerNorm).
    pooling : {"mean", "max", "add", "mean_max"}
        Global pooling of node embeddings into one graph embedding.
    dropout : float
    lr, weight_decay : float
        Adam optimiser settings.
    epochs, batch_size : int
    standardize : bool
        Standardise node features with the mean/SD of all training nodes.
    seed : int
        Seeds torch's generator and the batch order.
    n_threads : int, optional
        torch CPU threads while this model trains or predicts (restored afterwards); ``None`` keeps
        torch's setting. Small graphs train much faster with 1 thread on a busy machine.
    progress : bool
        Progress bar over epochs.

    Attributes
    ----------
    classes_ : ndarray
    network_ : torch.nn.Module
    feature_mean_, feature_std_ : (F,) ndarray
    loss_curve_ : list of float
        Mean training loss per epoch.
    """

    def __init__(
        self,
        conv: str = "gcn",
        *,
        hidden: int = 64,
        layers: int = 2,
        pooling: str = "mean_max",
        dropout: float = 0.1,
        lr: float = 5e-3,
        weight_decay: float = 1e-4,
        epochs: int = 100,
        batch_size: int = 32,
        standardize: bool = True,
        seed: int = 0,
        n_threads: int | None = None,
        progress: bool = False,
    ):
        self.conv = conv
        self.hidden = hidden
        self.layers = layers
        self.pooling = pooling
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.standardize = standardize
        self.seed = seed
        self.n_threads = n_threads
        self.progress = progress

    def _datasets(self, graphs: Sequence, *, fitted: bool):
        import torch

        if isinstance(graphs, (str, bytes)) or not hasattr(graphs, "__len__"):
            raise TypeError(f"graphs must be a sequence of graphs, got {type(graphs).__name__}")
        if len(graphs) == 0:
            raise ValueError("graphs is empty")
        datas = [_to_data(g, i) for i, g in enumerate(graphs)]
        dims = {int(d.x.shape[1]) for d in datas}
        if len(dims) != 1:
            raise ValueError(
                f"all graphs must have the same number of node features, got {sorted(dims)}"
            )
        if fitted and dims != {self.n_features_in_}:
            raise ValueError(
                f"graphs have {dims.pop()} node features, "
                f"the model was fitted on {self.n_features_in_}"
            )
        if not fitted:
            allx = torch.cat([d.x.float() for d in datas])
            self.n_features_in_ = int(allx.shape[1])
            if self.standardize:
                self.feature_mean_ = allx.mean(0).numpy().astype(np.float32)
                sd = allx.std(0).numpy().astype(np.float32)
                self.feature_std_ = np.where(sd > 0, sd, 1.0).astype(np.float32)
            else:
                self.feature_mean_ = np.zeros(allx.shape[1], np.float32)
                self.feature_std_ = np.ones(allx.shape[1], np.float32)
        mean, std = torch.from_numpy(self.feature_mean_), torch.from_numpy(self.feature_std_)
        out = []
        for d in datas:
            d = d.clone()
            d.x = (d.x.float() - mean) / std
            if d.edge_index is None:
                d.edge_index = torch.zeros((2, 0), dtype=torch.long)
            out.append(d)
        return out

    def fit(self, graphs: Sequence, y=None) -> GraphDiagnosticModel:
        """Train on a list of graphs.

        Parameters
        ----------
        graphs : sequence
            ``Data`` objects, objects with ``to_pyg()``, or ``(connectivity, features[, label])``
            tuples.
        y : (n_graphs,) array-like, optional
            Graph labels; taken from each graph's ``y`` when omitted.

        Returns
        -------
        self
        """
        import torch
        from torch_geometric.loader import DataLoader
        from tqdm.auto import trange

        if self.conv not in CONVS:
            raise ValueError(f"conv must be one of {CONVS}, got {self.conv!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        datas = self._datasets(graphs, fitted=False)
        if y is None:
            if any(getattr(d, "y", None) is None for d in datas):
                raise ValueError("y is required when the graphs carry no label (graph.y)")
            y = np.array([d.y.view(-1)[0].item() for d in datas])
        y = check_labels_1d(y, n=len(datas))
        self.classes_, codes = np.unique(y, return_inverse=True)
        for d, c in zip(datas, codes, strict=True):
            d.y = torch.tensor([int(c)])
        gen = torch.Generator().manual_seed(self.seed)
        with torch.random.fork_rng(), _threads(self.n_threads):
            torch.manual_seed(self.seed)
            net = _build_net(
                self.n_features_in_,
                self.classes_.size,
                conv=self.conv,
                hidden=self.hidden,
                layers=self.layers,
                pooling=self.pooling,
                dropout=self.dropout,
            )
            opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            loader = DataLoader(datas, batch_size=self.batch_size, shuffle=True, generator=gen)
            self.loss_curve_ = []
            net.train()
            for _ in trange(self.epochs, desc="GNN", disable=not self.progress):
                total = 0.0
                for batch in loader:
                    opt.zero_grad()
                    loss = torch.nn.functional.cross_entropy(
                        net(batch.x, batch.edge_index, batch.batch), batch.y
                    )
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * batch.num_graphs
                self.loss_curve_.append(total / len(datas))
        net.eval()
        self.network_ = net
        return self

    def _check_fitted(self):
        if not hasattr(self, "network_"):
            raise RuntimeError(
                "this GraphDiagnosticModel is not fitted yet; call fit(graphs, y) first"
            )

    def decision_function(self, graphs: Sequence) -> np.ndarray:
        """Logits, shape ``(n_graphs, n_classes)``."""
        import torch
        from torch_geometric.loader import DataLoader

        self._check_fitted()
        datas = self._datasets(graphs, fitted=True)
        out = []
        with torch.no_grad(), _threads(self.n_threads):
            for batch in DataLoader(datas, batch_size=max(self.batch_size, 64), shuffle=False):
                out.append(self.network_(batch.x, batch.edge_index, batch.batch))
        return torch.cat(out).numpy().astype(float)

    def predict_proba(self, graphs: Sequence) -> np.ndarray:
        """Class probabilities, shape ``(n_graphs, n_classes)``."""
        z = self.decision_function(graphs)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def predict(self, graphs: Sequence) -> np.ndarray:
        """Predicted labels, shape ``(n_graphs,)``."""
        return self.classes_[np.argmax(self.decision_function(graphs), axis=1)]

    def node_attributions(
        self, graph, *, target=None, method: str = "integrated_gradients", steps: int = 64
    ):
        """Per-node attribution of the logit of ``target`` (default: the predicted class).

        Parameters
        ----------
        graph : one graph (any accepted form)
        target : class label, optional
        method : {"integrated_gradients", "grad_x_input", "saliency", "mask"}
            ``integrated_gradients`` integrates gradients from an all-zero (training-mean)
            node-feature baseline; the attributions then sum to ``logit(x) - logit(baseline)``
            (completeness). ``grad_x_input`` is the gradient times the standardised input;
            ``saliency`` the L1 norm of the gradient (unsigned). ``mask`` is GNNExplainer-style
            (Ying et al. 2019, node-feature variant): a soft mask in (0, 1) per node, learned so
            that the masked graph keeps the target's probability while the mask stays small and
            near 0/1; the mask is returned.
        steps : int
            Riemann steps of integrated gradients; optimisation steps of ``mask``.

        Returns
        -------
        (N,) ndarray
            One value per node (summed over features); positive = pushed towards ``target``.
        """

        self._check_fitted()
        if method not in ATTRIBUTIONS:
            raise ValueError(f"method must be one of {ATTRIBUTIONS}, got {method!r}")
        d = self._datasets([graph], fitted=True)[0]
        if target is None:
            k = int(np.argmax(self.decision_function([graph])[0]))
        else:
            hits = np.flatnonzero(self.classes_ == target)
            if hits.size == 0:
                raise ValueError(
                    f"target {target!r} is not one of the classes {self.classes_.tolist()}"
                )
            k = int(hits[0])
        with _threads(self.n_threads):
            return self._attribute(d, k, method, steps)

    def _attribute(self, d, k: int, method: str, steps: int) -> np.ndarray:
        import torch

        n = d.x.shape[0]
        net = self.network_
        if method == "mask":
            return self._mask(d, k, steps=max(steps, 100))
        if method == "integrated_gradients":
            alphas = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps  # midpoint rule
            x = (
                (alphas[:, None, None] * d.x[None]).reshape(steps * n, -1).requires_grad_(True)
            )  # (S*N, F)
            ei = torch.cat([d.edge_index + s * n for s in range(steps)], dim=1)
            batch = torch.arange(steps).repeat_interleave(n)
            net(x, ei, batch)[:, k].sum().backward()
            grad = x.grad.reshape(steps, n, -1).mean(0)  # (N, F)
            return (grad * d.x).sum(1).detach().numpy().astype(float)
        x = d.x.clone().requires_grad_(True)
        net(x, d.edge_index, torch.zeros(n, dtype=torch.long))[0, k].backward()
        if method == "grad_x_input":
            return (x.grad * d.x).sum(1).detach().numpy().astype(float)
        return x.grad.abs().sum(1).detach().numpy().astype(float)

    def _mask(
        self, d, k: int, *, steps: int, size_weight: float = 0.05, entropy_weight: float = 0.1
    ):
        """GNNExplainer-style soft node mask (masked-out nodes get the training-mean features)."""
        import torch

        for p in self.network_.parameters():
            p.requires_grad_(False)
        try:
            gen = torch.Generator().manual_seed(self.seed)
            logits = (0.1 * torch.randn(d.x.shape[0], generator=gen) + 1.0).requires_grad_(True)
            opt = torch.optim.Adam([logits], lr=0.05)
            batch = torch.zeros(d.x.shape[0], dtype=torch.long)
            for _ in range(steps):
                opt.zero_grad()
                m = torch.sigmoid(logits)  # (N,)
                out = self.network_(d.x * m[:, None], d.edge_index, batch)  # (1, K)
                ent = -(m * torch.log(m + 1e-8) + (1 - m) * torch.log(1 - m + 1e-8)).mean()
                loss = (
                    -torch.log_softmax(out, dim=1)[0, k]
                    + size_weight * m.sum()
                    + entropy_weight * ent
                )
                loss.backward()
                opt.step()
            return torch.sigmoid(logits).detach().numpy().astype(float)
        finally:
            for p in self.network_.parameters():
                p.requires_grad_(True)
