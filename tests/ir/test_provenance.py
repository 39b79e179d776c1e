"""The plan JSON names the framework parameters behind folded weights (TorchScript writes Transpose(W) for
Linear layers): applying its kept indices to the torch parameters gives exactly the pruned ONNX weights."""

from __future__ import annotations

import numpy as np
import onnx

import onnxprune as op
from onnxprune import AnalysisOptions, models
from onnxprune.search import plan_pruning
from onnxprune.selection import SelectionOptions
from tests.support.checked import checked_prune


def test_plan_parameters_reproduce_pruned_weights_from_torch(exported_model):
    path = exported_model("bert_encoder", "torchscript", True)
    dg = op.analyse_model(path, options=AnalysisOptions(factor_policy="leading"))
    plan = plan_pruning(dg, "l2", SelectionOptions(ratio=0.5, heads_ratio=0.5, no_hidden=True))
    doc = plan.to_dict(dg)
    assert {"attn.0.q.weight", "attn.0.proj.weight"} <= set(doc["parameters"])
    pruned = {i.name: onnx.numpy_helper.to_array(i) for i in checked_prune(dg, plan.groups).model.graph.initializer}
    state = {k: v.detach().numpy() for k, v in models.ZOO["bert_encoder"].build().state_dict().items()}
    for name, entry in doc["parameters"].items():
        values = state[name]
        for axis, kept in entry["kept"].items():
            values = np.take(values, kept, axis=int(axis))
        _, axes = dg.loaded.sources[entry["from"]]
        np.testing.assert_array_equal(np.transpose(values, axes), pruned[entry["from"]])
