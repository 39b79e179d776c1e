"""apply_plan on module types the zoo does not have: GRU, nn.MultiheadAttention (packed in-projection)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from onnxprune import models
from onnxprune.analysis import analyse_model
from onnxprune.apply import apply_plan as prune_onnx
from onnxprune.runtime.sessions import make_session
from onnxprune.search import plan_pruning
from onnxprune.selection import SelectionOptions
from onnxprune.torch import apply_plan


class GRUNet(nn.Module):
    """Linear -> 2-layer bidirectional GRU -> Linear on the last step."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(6, 12)
        self.gru = nn.GRU(12, 16, num_layers=2, bidirectional=True, batch_first=True)
        self.out = nn.Linear(32, 3)

    def forward(self, x):
        y, _ = self.gru(self.inp(x))
        return self.out(y[:, -1])


class MHANet(nn.Module):
    """Linear -> nn.MultiheadAttention (self-attention, packed in_proj) -> Linear."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(6, 16)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        h = self.inp(x)
        y, _ = self.attn(h, h, h, need_weights=False)
        return self.out(y.mean(1))


def _spec(name, ctor):
    def inputs(batch=2):
        return (torch.randn(batch, 5, 6, generator=torch.Generator().manual_seed(batch)),)
    # Seeded noise on constant biases, as models/transformers does: the dynamo exporter merges equal initializers.
    build = models._builder(lambda: models.transformers.randomize_constant_parameters(ctor()))
    return models.ModelSpec(name, build, inputs, ("x",), {"x": {0: "batch"}, "output": {0: "batch"}},
                            "rnn")


def _round_trip(tmp_path, spec, exporter):
    path = models.export(spec, tmp_path / f"{spec.name}.{exporter}.onnx", exporter, keep_bn=False)
    dg = analyse_model(path)
    plan = plan_pruning(dg, "l2", SelectionOptions(ratio=0.5)).bind(dg)
    session = make_session(prune_onnx(dg, plan.groups).exported)
    module = spec.build()
    args = spec.example_inputs()
    result = apply_plan(module, plan)
    expected = session.run(None, {"x": args[0].numpy()})[0]
    with torch.no_grad():
        got = module(*args).numpy()
    assert np.max(np.abs(got - expected)) <= 1e-4 * np.max(np.abs(expected)), result.summary()
    return module, result


@pytest.mark.parametrize("exporter", models.EXPORTERS)
def test_gru(tmp_path, exporter):
    module, result = _round_trip(tmp_path, _spec("gru", GRUNet), exporter)
    assert module.gru.hidden_size < 16 and module.gru.input_size == module.inp.out_features < 12


@pytest.mark.parametrize("exporter", models.EXPORTERS)
def test_multihead_attention(tmp_path, exporter):
    module, result = _round_trip(tmp_path, _spec("mha", MHANet), exporter)
    assert type(module.attn).__name__ == "PrunedMultiheadAttention"
    assert module.attn.in_proj_weight.shape[1] == module.inp.out_features < 16
