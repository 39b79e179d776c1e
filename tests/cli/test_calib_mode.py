"""``prune --calib-mode``: graph calibration given as a directory of one-graph .npz files (x [nodes, F] and
edge_index [2, edges] share no sample axis) is read as whole feeds, and the validation summary counts feeds, not
the nodes of the first input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from onnxprune.models import trained_graph

from onnxprune.cli import main


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """The trained GAT, and a directory of 5 graphs (60..100 nodes) as one .npz each."""
    gat = trained_graph.train_gat(tmp_path_factory.mktemp("gat"))
    folder = tmp_path_factory.mktemp("graphs")
    for k in range(5):
        x, edge_index, _ = trained_graph.planted_partition(nodes=60 + 10 * k, seed=k)
        np.savez(folder / f"graph{k}.npz", x=x, edge_index=edge_index)
    return gat, folder


@pytest.mark.parametrize("mode", ["auto", "feeds"])
def test_graph_directory_is_counted_in_feeds(graphs, mode, tmp_path):
    gat, folder = graphs
    report = tmp_path / "report.json"
    result = CliRunner().invoke(main, ["prune", gat.path, str(tmp_path / "pruned.onnx"), "--ratio", "0.3",
                                       "--criterion", "wanda", "--calib", str(folder), "--calib-mode", mode,
                                       "--calib-holdout", "0.2", "--report", str(report)])
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["calibration"] == {"fit_samples": 4, "holdout_samples": 1}
    validation = data["validation"]
    assert validation["passed"] and not validation["skipped"], validation
    # validation runs on every feed (fit and held out): 5 graphs, not 60 + 70 + ... nodes
    assert validation["inputs"] == "5 whole calibration feeds", validation["inputs"]
    assert "validation: PASSED (mask oracle, max abs diff" in result.output
    assert "on 5 whole calibration feeds)" in result.output, result.output


def test_samples_mode_refuses_graphs(graphs, tmp_path):
    gat, folder = graphs
    result = CliRunner().invoke(main, ["prune", gat.path, str(tmp_path / "pruned.onnx"), "--ratio", "0.3",
                                       "--calib", str(folder), "--calib-mode", "samples"])
    assert result.exit_code != 0
    assert "disagree on the number of samples" in result.output
    assert not (tmp_path / "pruned.onnx").exists()


def test_calib_mode_choices_are_checked(graphs, tmp_path):
    gat, folder = graphs
    result = CliRunner().invoke(main, ["prune", gat.path, str(tmp_path / "p.onnx"), "--calib", str(folder),
                                       "--calib-mode", "graphs"])
    assert result.exit_code == 2 and "--calib-mode" in result.output
