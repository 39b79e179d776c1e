"""Untied copies back to PyTorch (issue 8 follow-up): a freshly initialised narrow DenseNet whose BatchNorm
parameters the dynamo exporter merged (every BN of one width reads one initializer of ones for its scale *and* its
variance) is untied before grouping; the plan names each copy's origin (the constant, the node and input it was made
for, the module scope and the torch parameter that node read), and ``apply_plan`` slices that parameter of each
BN: the pruned torch module computes what the pruned ONNX model computes (1e-4 relative) and exports again. The
``nn.TransformerEncoder`` whose deep-copied layers the exporter merged is pruned per layer and round-trips too."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from onnxprune.models import densenet_fresh

from onnxprune import models
from onnxprune.analysis import analyse_model
from onnxprune.apply import apply_plan as prune_onnx
from onnxprune.runtime.sessions import make_session
from onnxprune.search import plan_pruning
from onnxprune.selection import SelectionOptions
from onnxprune.torch import apply_plan
from tests.torch.test_round_trip import reexport, relative_error, round_trip, runnable, torch_outputs


def _images(batch: int = 2) -> tuple[torch.Tensor, ...]:
    return (torch.randn(batch, 3, 16, 16, generator=torch.Generator().manual_seed(batch)),)


SPEC = models.ModelSpec("narrow_densenet_fresh", densenet_fresh.fresh_narrow_densenet, _images, ("x",),
                        {"x": {0: "batch"}, "output": {0: "batch"}}, "cnn")


@pytest.fixture(scope="module")
def dynamo_densenet(tmp_path_factory) -> str:
    paths = models.export_variants(SPEC, tmp_path_factory.mktemp("untied"), ("dynamo",), (False,))
    return paths[("dynamo", False)]


def _plan(path: str):
    dg = analyse_model(path)
    plan = plan_pruning(dg, "l2", SelectionOptions(ratio=0.5)).bind(dg)
    return dg, plan


def test_plan_names_the_origin_of_every_untied_copy(dynamo_densenet):
    dg, plan = _plan(dynamo_densenet)
    data = plan.to_dict()
    copies = {name: entry for name, entry in data["initializers"].items() if "__untied" in name}
    assert len(copies) >= 8, sorted(data["initializers"])  # the merged BN parameters were untied and pruned
    nodes = {n.name: n for n in dg.loaded.graph.nodes}
    for name, entry in copies.items():
        origin = entry["untied_from"]
        assert name.startswith(origin["initializer"] + "__untied")
        node = nodes[origin["node"]]
        assert node.op == "BatchNormalization" and node.inputs[origin["input"]].name == name
        word = {1: "scale", 2: "bias", 3: "mean", 4: "variance"}[origin["input"]]
        assert origin["role"] == f"BatchNormalization {word}"
        attribute = {"scale": "weight", "bias": "bias", "mean": "running_mean", "variance": "running_var"}[word]
        assert entry["parameter"] == f"{origin['scope']}.{attribute}"
        assert data["parameters"][entry["parameter"]] == {"from": name, "kept": entry["kept"]}
    # one merged initializer of ones was read as scale and as variance: its copies name both parameters
    parameters = {e["parameter"] for e in copies.values()}
    assert any(p.endswith(".running_var") for p in parameters) and any(p.endswith(".weight") for p in parameters)


def test_untied_copies_round_trip_to_torch(dynamo_densenet, tmp_path):
    dg, plan = _plan(dynamo_densenet)
    assert any(d.untied for d in dg.ties)
    pruned = prune_onnx(dg, plan.groups)
    session = make_session(runnable(pruned.exported.proto))
    module = densenet_fresh.fresh_narrow_densenet()
    args = SPEC.example_inputs()
    before = torch_outputs(module, args)
    result = apply_plan(module, plan)
    # every BN lost channels with the conv it follows: running statistics and affine parameters alike
    for name, bn in module.named_modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            sizes = {bn.num_features, bn.weight.shape[0], bn.bias.shape[0], bn.running_mean.shape[0],
                     bn.running_var.shape[0]}
            assert len(sizes) == 1, (name, sizes)
    expected = session.run(None, {"x": args[0].numpy()})[0]
    got = torch_outputs(module, args)
    assert got.shape == expected.shape
    error = relative_error(got, expected)
    assert error < 1e-4, f"{error}\n{result.summary()}"
    assert relative_error(before, expected) > 1e-4  # pruning changed the function: the comparison can fail
    assert any("untied copy" in m.how for m in result.mappings)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for exporter in ("torchscript", "dynamo"):
            again = reexport(SPEC, module, exporter, args)
            assert relative_error(again, got) < 1e-4, exporter
    # the plan as JSON plus the original model slices the same tensors
    plan.save(tmp_path / "plan.json")
    other = densenet_fresh.fresh_narrow_densenet()
    apply_plan(other, str(tmp_path / "plan.json"), dynamo_densenet)
    for (na, ta), (nb, tb) in zip(module.state_dict().items(), other.state_dict().items()):
        assert na == nb and torch.equal(ta, tb)


def test_deep_copied_encoder_layers_round_trip_per_layer(exported_model):
    """The dynamo export of ``nn.TransformerEncoder`` (layers deep-copied, merged by the exporter) has one heads group
    per layer once the out_proj weight is untied; half the heads of each, torch follows."""
    figures = round_trip(exported_model, "torch_encoder", "dynamo", keep_bn=False, check_export=False)
    assert figures["error"] < 1e-4
    assert np.isfinite(figures["error"])
