"""Seed systems trained in seconds on CPU, for accuracy claims on graph networks and detectors (issue 9).

- ``train_gat``: the ``graph_nets.GAT`` (GATConv 4 heads x 8, concat -> GATConv 2 heads x 8, mean -> Linear) on a
  planted-partition graph: 5 classes of nodes, edges far likelier inside a class than across, node features a noisy
  class mean (a feature-only classifier is much worse than one that reads the neighbours). Trained full-batch on
  60% of the nodes, accuracy measured on the other 40%.

The graph is one sample: x [N, 12] and edge_index [2, E] have no common sample axis, so calibration is the graph's
own inputs as one feed dict (``TrainedGraph.feed``), not a stack of samples.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from onnxprune.runtime import make_session

from . import ModelSpec, export
from .graph_nets import GAT, IN_FEATURES, NUM_CLASSES


@dataclass(frozen=True)
class TrainedGraph:
    """A trained, exported node classifier: ``path``, the graph as a feed dict, node labels, the held-out nodes and
    the exported model's accuracy on them (onnxruntime)."""

    name: str
    path: str
    feed: dict
    labels: np.ndarray
    test_nodes: np.ndarray
    accuracy: float


def planted_partition(nodes: int = 400, classes: int = NUM_CLASSES, p_in: float = 0.05, p_out: float = 0.004,
                      noise: float = 2.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A stochastic block model: (x float32 [nodes, 12], edge_index int64 [2, E] with both directions of every
    edge, labels int64 [nodes]). Class c's nodes link to each other with probability ``p_in`` and to others with
    ``p_out``; features are a per-class mean (unit-normal entries) plus normal noise of scale ``noise``."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(nodes) % classes).astype(np.int64)
    same = labels[:, None] == labels[None, :]
    upper = np.triu(rng.random((nodes, nodes)) < np.where(same, p_in, p_out), k=1)
    src, dst = np.nonzero(upper | upper.T)
    means = rng.standard_normal((classes, IN_FEATURES))
    x = (means[labels] + noise * rng.standard_normal((nodes, IN_FEATURES))).astype(np.float32)
    return x, np.stack([src, dst]).astype(np.int64), labels


def node_accuracy(model, feed: dict, labels: np.ndarray, nodes: np.ndarray) -> float:
    """Accuracy of ``model`` (a path, ModelProto or ExportedModel) on ``nodes`` of the graph in ``feed``."""
    logits = make_session(model, "cpu").run(None, feed)[0]
    return float(np.mean(logits[nodes].argmax(axis=1) == labels[nodes]))


def train_gat(out_dir: str | os.PathLike, exporter: str = "torchscript", epochs: int = 150,
              hidden: int = 8) -> TrainedGraph:
    """Train the GAT on ``planted_partition()`` (seeded: the same call gives the same weights; about 2 s on two
    cores), export it to ``out_dir/gat_trained.<exporter>.onnx`` and measure its held-out node accuracy."""
    x, edge_index, labels = planted_partition()
    order = np.random.default_rng(1).permutation(len(labels))
    train_nodes, test_nodes = np.sort(order[:int(0.6 * len(labels))]), np.sort(order[int(0.6 * len(labels)):])
    torch.manual_seed(0)
    model = GAT(hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    xt, et, yt, train_t = map(torch.from_numpy, (x, edge_index, labels, train_nodes))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model.train()
    for _ in range(epochs):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(xt, et)[train_t], yt[train_t]).backward()
        optimizer.step()
    torch.set_num_threads(threads)
    model.eval()
    spec = ModelSpec("gat_trained", lambda: model, lambda batch=2: (xt, et), ("x", "edge_index"),
                     {"x": {0: "nodes"}, "edge_index": {1: "edges"}, "output": {0: "nodes"}}, "graph")
    path = export(spec, os.path.join(os.fspath(out_dir), f"gat_trained.{exporter}.onnx"), exporter, keep_bn=True)
    feed = {"x": x, "edge_index": edge_index}
    return TrainedGraph("gat_trained", path, feed, labels, test_nodes, node_accuracy(path, feed, labels, test_nodes))
