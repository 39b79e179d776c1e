"""Issue 8 part 5: constants shared only because their values are identical (an exporter's deduplication of fresh
BatchNorm parameters) are untied before groups form; real ties (a weight read by two nodes: tied embeddings) are
kept; both are said in the group details; copies still equal after pruning are shared again in the written model."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnxprune.models.densenet_fresh import NarrowDenseNet, SharedLayerMLP
from torch import nn

import onnxprune as op
from onnxprune import models
from onnxprune.ir.untie import untie_constants
from onnxprune.validation.oracle import compare, masked_model


def _fresh(ctor):
    def build() -> nn.Module:
        torch.manual_seed(0)
        return ctor().eval()  # BN as initialised: scale 1, bias 0, mean 0, variance 1
    return build


def _spec(name: str, ctor, size: int) -> models.ModelSpec:
    def inputs(batch: int = 2) -> tuple[torch.Tensor, ...]:
        return (torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch)),)
    return models.ModelSpec(name, _fresh(ctor), inputs, ("x",), {"x": {0: "batch"}, "output": {0: "batch"}}, "cnn")


def _shared_bn_params(path: str) -> int:
    model = onnx.load(path)
    reads = {}
    for node in model.graph.node:
        if node.op_type == "BatchNormalization":
            for name in node.input[1:]:
                reads[name] = reads.get(name, 0) + 1
    return sum(n > 1 for n in reads.values())


@pytest.fixture(scope="module")
def narrow_densenet(tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("untie")
    paths = models.export_variants(_spec("narrow_densenet", NarrowDenseNet, 16), out, ("torchscript", "dynamo"),
                                   (False,))
    return {exporter: path for (exporter, _), path in paths.items()}


def test_fresh_batchnorm_deduplicated_by_dynamo_gives_the_torchscript_groups(narrow_densenet):
    assert _shared_bn_params(narrow_densenet["dynamo"]) > 0  # the exporter did merge them (else nothing is tested)
    assert _shared_bn_params(narrow_densenet["torchscript"]) == 0
    counts = {}
    for exporter, path in narrow_densenet.items():
        dg = op.analyse_model(path)
        counts[exporter] = (len(dg.channel_groups()), len(dg.prunable_groups()), sorted(g.size for g in dg.groups))
        untied = [d for d in dg.ties if d.untied]
        assert bool(untied) == (exporter == "dynamo")
        assert all("identical values" in d.reason and "BatchNormalization" in d.reason for d in untied)
        assert not [d for d in dg.ties if not d.untied]
    assert counts["dynamo"] == counts["torchscript"]


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_untied_densenet_prunes_oracle_exact_and_smaller(narrow_densenet, tmp_path, exporter):
    path = narrow_densenet[exporter]
    dg = op.analyse_model(path)
    plan = {g.id: list(range(g.size // 2)) for g in dg.prunable_groups()}
    assert len(plan) >= 6
    result = op.apply_plan(dg, plan)
    onnx.checker.check_model(result.model, full_check=True)
    comparison = compare(masked_model(dg, plan), result.exported, oracle=True)
    assert comparison.passed and comparison.max_abs_diff < 1e-4, comparison
    result.save(tmp_path / "pruned.onnx")
    assert _constant_bytes(onnx.load(tmp_path / "pruned.onnx")) < 0.6 * _constant_bytes(onnx.load(path))


def _constant_bytes(model: onnx.ModelProto) -> int:
    """Bytes of every constant tensor: initializers and Constant nodes' values."""
    tensors = list(model.graph.initializer) + [a.t for n in model.graph.node if n.op_type == "Constant"
                                               for a in n.attribute if a.name == "value"]
    return sum(numpy_helper.to_array(t).nbytes for t in tensors)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_nothing_pruned_is_written_no_larger_than_the_input(narrow_densenet, tmp_path, exporter):
    """Constants encoded as compactly as in the input: untied copies with nothing pruned are shared again."""
    path = narrow_densenet[exporter]
    dg = op.analyse_model(path)
    copies = sum(len(d.copies) - 1 for d in dg.ties if d.untied)
    assert bool(copies) == (exporter == "dynamo")
    op.apply_plan(dg, {}).save(tmp_path / "same.onnx")
    written, original = onnx.load(tmp_path / "same.onnx"), onnx.load(path)
    assert not [t.name for t in written.graph.initializer if "__untied" in t.name]
    if exporter == "dynamo":  # (TorchScript's Constant nodes come back as folded initializers: not comparable)
        assert _constant_bytes(written) <= _constant_bytes(original)


# ---------------------------------------------------------------------------------------------- built by hand
def _deduplicated_model() -> onnx.ModelProto:
    """x -> Conv(w1, z) -> BN(s, b, m, v) -> Relu -> Conv(w2, z) -> BN(s, b, m, v) -> Relu -> Conv(w3) -> y: both
    BNs read the same four initializers and both Convs the same zero bias (what a deduplicating exporter writes for
    fresh BNs and zero-initialised biases of equal width)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
             for name, shape in (("w1", (8, 3, 3, 3)), ("w2", (8, 8, 3, 3)), ("w3", (4, 8, 1, 1)))]
    inits += [numpy_helper.from_array(np.full(8, value, np.float32), name)
              for name, value in (("s", 1.0), ("b", 0.0), ("m", 0.0), ("v", 1.0), ("z", 0.0))]
    nodes = [helper.make_node("Conv", ["x", "w1", "z"], ["c1"], pads=[1] * 4, name="conv1"),
             helper.make_node("BatchNormalization", ["c1", "s", "b", "m", "v"], ["n1"], name="bn1"),
             helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "z"], ["c2"], pads=[1] * 4, name="conv2"),
             helper.make_node("BatchNormalization", ["c2", "s", "b", "m", "v"], ["n2"], name="bn2"),
             helper.make_node("Relu", ["n2"], ["r2"], name="relu2"),
             helper.make_node("Conv", ["r2", "w3"], ["y"], name="conv3")]
    graph = helper.make_graph(nodes, "dedup", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def test_hand_built_deduplication_is_untied_and_pruned_exactly(tmp_path):
    model = _deduplicated_model()
    dg = op.analyse_model(model)
    assert sorted(g.root.tensor for g in dg.prunable_groups()) == ["w1", "w2"]  # not merged through z
    assert [d.name for d in dg.ties if d.untied] == ["z", "s", "b", "m", "v"]
    details = "\n".join(g.details() for g in dg.prunable_groups())
    assert "untied: 's' shared by bn1, bn2 (identical values, BatchNormalization scale" in details
    assert "untied: 'z' shared by conv1, conv2 (identical values, Conv bias" in details
    plan = {dg.group_of("w1", 0)[0].id: [0, 3], dg.group_of("w2", 0)[0].id: [1, 2, 5]}
    result = op.apply_plan(dg, plan)
    onnx.checker.check_model(result.model, full_check=True)
    shapes = {t.name: tuple(t.dims) for t in result.model.graph.initializer}
    assert shapes["w1"] == (6, 3, 3, 3) and shapes["w2"][:2] == (5, 6) and shapes["w3"] == (4, 5, 1, 1)
    assert sorted(s for name, s in shapes.items() if len(s) == 1) == [(5,)] * 5 + [(6,)] * 5
    comparison = compare(masked_model(dg, plan), result.exported, oracle=True)
    assert comparison.passed and comparison.max_abs_diff < 1e-4


def test_hand_built_copies_pruned_alike_are_shared_again():
    model = _deduplicated_model()
    dg = op.analyse_model(model)
    plan = {dg.group_of("w1", 0)[0].id: [0, 3], dg.group_of("w2", 0)[0].id: [0, 3]}  # same channels both sides
    written = op.apply_plan(dg, plan).model
    bn_inputs = [tuple(n.input[1:]) for n in written.graph.node if n.op_type == "BatchNormalization"]
    assert len(bn_inputs) == 2 and bn_inputs[0] == bn_inputs[1]
    assert len(written.graph.initializer) == len(model.graph.initializer)


def test_untie_gives_each_reader_its_own_copy_of_the_same_values():
    loaded = op.load(_deduplicated_model())
    decisions = untie_constants(loaded.graph)
    assert (decisions[0].name, decisions[0].readers) == ("z", ["conv1", "conv2"])
    assert [(d.name, d.readers, d.untied) for d in decisions[1:]] == [(n, ["bn1", "bn2"], True) for n in "sbmv"]
    bns = [n for n in loaded.graph.nodes if n.op == "BatchNormalization"]
    for k, decision in enumerate(decisions[1:], start=1):
        first, second = (bn.inputs[k] for bn in bns)
        assert [first.name, second.name] == decision.copies and first is not second
        assert first._values is second._values  # shared, not copied


def _tied_lm() -> onnx.ModelProto:
    """ids -> Gather(E) -> Relu -> Gemm(h, E, transB=1) -> logits: the output projection is the embedding itself
    (tied input/output embeddings), one initializer read by both."""
    rng = np.random.default_rng(0)
    table = numpy_helper.from_array(rng.standard_normal((50, 16)).astype(np.float32), "E")
    nodes = [helper.make_node("Gather", ["E", "ids"], ["h"], name="embed"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "E"], ["logits"], transB=1, name="lm_head")]
    graph = helper.make_graph(nodes, "tied", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 50])], [table])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def test_tied_embeddings_keep_their_tie():
    dg = op.analyse_model(_tied_lm())
    assert [(d.name, d.untied) for d in dg.ties] == [("E", False)]
    assert "weight sharing" in dg.ties[0].reason
    group = dg.group_of("E", 1)[0]
    assert group.prunable and "tie kept: 'E' shared by embed, lm_head (weight sharing" in group.details()
    assert group.to_dict()["ties"][0]["untied"] is False
    plan = {group.id: [1, 4, 9]}
    result = op.apply_plan(dg, plan)
    onnx.checker.check_model(result.model, full_check=True)
    assert [tuple(t.dims) for t in result.model.graph.initializer] == [(50, 13)]  # still one tensor
    comparison = compare(masked_model(dg, plan), result.exported, oracle=True)
    assert comparison.passed and comparison.max_abs_diff < 1e-5


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_zoo_lm_with_tied_head_is_analysed_alike(exported_model, exporter):
    dg = op.analyse_model(exported_model("gpt_decoder", exporter, False))
    assert not [d for d in dg.ties if d.untied and any("weight" in r for r in d.roles)]
    assert len(dg.channel_groups()) == 8  # the same with both exporters (TorchScript's count before untying)


@pytest.mark.slow
def test_densenet121_fresh_init_has_the_same_groups_with_both_exporters(tmp_path):
    spec = _spec("densenet121_fresh", models.real_width.DenseNet121, 64)
    paths = models.export_variants(spec, tmp_path, ("torchscript", "dynamo"), (False,))
    counts = {e: len(op.analyse_model(p).channel_groups()) for (e, _), p in paths.items()}
    assert counts["dynamo"] == counts["torchscript"] >= 120, counts


# ---------------------------------------------------------------------------------------------- module evidence
def test_deep_copied_encoder_layers_give_one_heads_group_per_layer(exported_model):
    """nn.TransformerEncoder deep-copies its layer: at init both layers' out_proj weights are equal and the dynamo
    exporter writes one initializer read by both layers' Gemms; its node metadata shows two module instances each
    reading a parameter of its own, so the weight is untied and the heads groups are per layer, as TorchScript's."""
    groups = {}
    for exporter in ("torchscript", "dynamo"):
        dg = op.analyse_model(exported_model("torch_encoder", exporter, False))
        groups[exporter] = sorted(g.size for g in dg.prunable_groups())
        if exporter == "dynamo":
            weights = [d for d in dg.ties if any("Gemm weight" in r for r in d.roles)]
            assert weights and all(d.untied for d in weights)
            assert all("separate modules: encoder.layers.0.self_attn, encoder.layers.1.self_attn" in d.reason
                       for d in weights)
    assert groups["dynamo"] == groups["torchscript"] == [8, 8, 32, 64, 64]  # two heads groups, one per layer


@pytest.fixture(scope="module")
def albert_like(tmp_path_factory) -> dict[str, str]:
    def inputs(batch: int = 2) -> tuple[torch.Tensor, ...]:
        return (torch.randn(batch, 8, generator=torch.Generator().manual_seed(batch)),)
    spec = models.ModelSpec("albert_like", _fresh(SharedLayerMLP), inputs, ("x",),
                            {"x": {0: "batch"}, "output": {0: "batch"}}, "mlp")
    paths = models.export_variants(spec, tmp_path_factory.mktemp("albert"), ("torchscript", "dynamo"), (False,))
    return {exporter: path for (exporter, _), path in paths.items()}


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_one_layer_applied_twice_keeps_its_tie(albert_like, exporter):
    """ALBERT-style sharing (one module called twice) is a real tie with both exporters: one hidden group spans both
    calls; dynamo's metadata says the module instance was called repeatedly."""
    dg = op.analyse_model(albert_like[exporter])
    kept = {d.name: d for d in dg.ties if not d.untied}
    assert {"layer.0.weight", "layer.2.weight"} <= set(kept)
    if exporter == "dynamo":
        assert "one module instance (layer.0) called repeatedly" in kept["layer.0.weight"].reason
        assert "layer.0.bias" in kept  # the bias of the repeated module is tied too
    hidden = dg.group_of("layer.0.weight", 0)
    assert len(hidden) == 1 and hidden[0].prunable and hidden[0].size == 32
    plan = {hidden[0].id: [1, 5, 30]}
    result = op.apply_plan(dg, plan)
    onnx.checker.check_model(result.model, full_check=True)
    shapes = {t.name: tuple(t.dims) for t in result.model.graph.initializer}
    assert shapes["layer.0.weight"] == (29, 16)  # still one tensor, read by both calls
    comparison = compare(masked_model(dg, plan), result.exported, oracle=True)
    assert comparison.passed and comparison.max_abs_diff < 1e-5


def test_without_metadata_a_shared_weight_stays_tied():
    """The rule needs the exporter's evidence: the same two-layer graph with no metadata keeps its weight tie."""
    model = _tied_lm()
    decisions = untie_constants(op.load(model).graph, {})
    assert [(d.name, d.untied) for d in decisions] == [("E", False)]
