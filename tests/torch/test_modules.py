"""apply_plan on module types the zoo does not have: GRU, nn.MultiheadAttention (packed in-projection), a custom
module whose forward views by its own size attributes (unambiguous, and ambiguous)."""

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
from onnxprune.torch import TorchMappingError, apply_plan


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


class HeadScale(nn.Module):
    """A custom module in the way of torch_geometric's GATConv: per-head projection viewed by its own size
    attributes (``self.heads``, ``self.out_channels``), scaled by a parameter [1, heads, out_channels]."""

    def __init__(self, heads: int, out_channels: int):
        super().__init__()
        self.heads, self.out_channels = heads, out_channels
        self.lin = nn.Linear(6, heads * out_channels)
        self.att = nn.Parameter(torch.randn(1, heads, out_channels))

    def forward(self, x):
        h = torch.relu(self.lin(x).view(-1, self.heads, self.out_channels) * self.att)
        return h.reshape(-1, self.heads * self.out_channels)


class HeadScaleNet(nn.Module):
    def __init__(self, heads: int = 2, out_channels: int = 6):
        super().__init__()
        self.layer = HeadScale(heads, out_channels)
        self.out = nn.Linear(heads * out_channels, 3)

    def forward(self, x):
        return self.out(self.layer(x))


def test_custom_module_size_attribute(tmp_path):
    """The plan removes positions within every head: the custom module's ``out_channels`` (the one int attribute
    equal to the old size of its parameter's pruned axis) follows, so its view still works."""
    module, result = _round_trip(tmp_path, _spec("heads", HeadScaleNet), "torchscript")
    assert module.layer.out_channels == module.layer.att.shape[2] < 6 and module.layer.heads == 2
    assert result.attributes["layer"]["out_channels"] == (6, module.layer.out_channels)


def test_custom_module_ambiguous_size_attribute_is_refused(tmp_path):
    """``heads == out_channels``: which attribute holds the pruned size is ambiguous; refused, naming both, and the
    module is left as it was."""
    spec = _spec("square", lambda: HeadScaleNet(3, 3))
    path = models.export(spec, tmp_path / "square.onnx", "torchscript", keep_bn=False)
    dg = analyse_model(path)
    plan = plan_pruning(dg, "l2", SelectionOptions(ratio=0.5)).bind(dg)
    module = spec.build()
    state = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.raises(TorchMappingError, match="heads, out_channels all equal 3"):
        apply_plan(module, plan)
    assert module.layer.out_channels == 3 and all(torch.equal(state[k], v) for k, v in module.state_dict().items())
