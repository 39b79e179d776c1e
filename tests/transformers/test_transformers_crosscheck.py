"""Cross-check with Torch-Pruning on the models/ ViT and BERT-style encoder: heads 0.5 and MLP 0.5 with l2
importance (hidden size kept) choose the same heads and the same MLP (and pooler) channels as Torch-Pruning's
MetaPruner (GroupMagnitudeImportance(p=2), prune_num_heads, head_pruning_ratio 0.5), and the ONNX we write has the
same weights, shape for shape and name for name, as Torch-Pruning's pruned model re-exported, and computes the
same outputs. Torch-Pruning leaves ``num_heads`` for the user to fix after pruning; we set it before re-export.

Initializer names: the TorchScript export with constant folding off keeps torch's parameter names, and writes each
Linear as MatMul(x, Transpose(weight)), which onnxprune folds into a constant named after the Transpose node: the
original file's Transpose nodes map those back to parameters (with the axes swapped).
"""

from __future__ import annotations

import dataclasses
import os
import warnings

import numpy as np
import onnx
import pytest

from onnxprune import models
from onnxprune.runtime import make_session
from tests.support import transformer_check as tc
from tests.support.checked import checked_prune

tp = pytest.importorskip("torch_pruning")
torch = pytest.importorskip("torch")


def _torch_names(path: str) -> dict[str, tuple[str, bool]]:
    """{folded constant name: (parameter name, transposed)} from the original file's Transpose nodes."""
    model = onnx.load(path)
    params = {i.name for i in model.graph.initializer}
    names = {p: (p, False) for p in params}
    for node in model.graph.node:
        if node.op_type == "Transpose" and node.input[0] in params:
            names[node.output[0]] = (node.input[0], True)
    return names


def _torch_pruning(spec: models.ModelSpec):
    """Torch-Pruning's pruned model and {(parameter, torch axis): removed indices}."""
    model = spec.build()
    attn = [m for m in model.modules() if isinstance(m, models.transformers.Attention)]
    num_heads = {lin: a.num_heads for a in attn for lin in (a.q, a.k, a.v)}
    ignored = [m for n, m in model.named_modules() if n in ("patch", "tok", "pos", "head")]  # keep hidden size
    names = {m: n for n, m in model.named_modules()}
    removed = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = tp.pruner.MetaPruner(model, spec.example_inputs(), importance=tp.importance.GroupMagnitudeImportance(
            p=2), pruning_ratio=0.5, num_heads=num_heads, prune_num_heads=True, prune_head_dims=False,
            head_pruning_ratio=0.5, ignored_layers=ignored)
        for group in pruner.step(interactive=True):
            for dep, idxs in group:
                layer = dep.target.module
                if isinstance(layer, torch.nn.Linear):
                    axis = 0 if pruner.DG.is_out_channel_pruning_fn(dep.handler) else 1
                    removed[(f"{names[layer]}.weight", axis)] = sorted(int(i) for i in idxs)
            group.prune()
    for a in attn:  # the manual fix Torch-Pruning needs: heads now come from the pruned projection width
        a.num_heads = a.num_kv_heads = a.q.out_features // a.head_dim
    return model.eval(), removed


@pytest.mark.parametrize("name", ["vit", "bert_encoder"])
def test_same_heads_and_channels_as_torch_pruning(exported_model, tmp_path, name):
    spec = models.ZOO[name]
    path = exported_model(name, "torchscript", True)
    dg = tc.analyse(path, spec, "leading")
    plan = tc.heads_mlp_plan(dg)
    result = checked_prune(dg, plan)
    to_torch = _torch_names(path)
    ours = {}
    for axis, idx in result.removed.items():
        if axis.tensor in to_torch and to_torch[axis.tensor][0].endswith(".weight"):
            param, transposed = to_torch[axis.tensor]
            ours[(param, 1 - axis.axis if transposed else axis.axis)] = idx.tolist()
    pruned_model, theirs = _torch_pruning(spec)
    assert theirs, "Torch-Pruning pruned nothing"
    assert ours == theirs  # every Linear weight axis either side pruned: q/k/v rows, out-proj and MLP columns...
    n_layers = spec.extra["layers"]
    heads_removed = [len(v) // spec.extra["head_dim"] for (p, a), v in theirs.items() if p.endswith("q.weight")]
    assert heads_removed == [spec.extra["heads"] // 2] * n_layers

    reexport = dataclasses.replace(spec, build=lambda: pruned_model)
    tp_path = models.export(reexport, os.path.join(tmp_path, f"{name}.tp.onnx"), exporter="torchscript")
    assert tc.named_weight_shapes(result.model) == tc.named_weight_shapes(tp_path)
    for batch, seq in tc.shapes_to_test(spec):
        f = tc.feeds(spec, batch, seq)
        (a,), (b,) = make_session(result.model, "cpu").run(None, f), make_session(tp_path, "cpu").run(None, f)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
