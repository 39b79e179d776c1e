"""An If exported from torch (issue 8 part 3): ``models.control_flow.SampleRateSwitch``, a conv stem then one of two
conv stacks of different structure chosen at run time, exported by the dynamo exporter (``torch.cond``) and by the
TorchScript exporter (a scripted ``if`` on a tensor). Both write the branch weights as outer initializers read inside
the branches. Pruned at 0.5 end to end (``onnxprune.prune``): checker, onnxruntime at two dynamic (batch, time)
sizes, the mask oracle at both, model fields kept (``prune_and_check``), and the oracle again down each branch."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnxprune.models import control_flow

import onnxprune as op
from onnxprune.validation.oracle import compare
from tests.support.real_export_check import prune_and_check


@pytest.fixture(scope="module")
def switch_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("control_flow")
    cache: dict[str, str] = {}

    def get(exporter: str) -> str:
        if exporter not in cache:
            cache[exporter] = control_flow.export_switch(out / f"switch.{exporter}.onnx", exporter)
        return cache[exporter]

    return get


@pytest.mark.parametrize("exporter", ["torchscript", pytest.param("dynamo", marks=pytest.mark.slow)])
def test_if_exported_from_torch_prunes_both_branches_and_matches_the_oracle(switch_export, tmp_path, exporter):
    path = switch_export(exporter)
    model = onnx.load(path)
    assert [n.op_type for n in model.graph.node].count("If") == 1
    dims = {d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim if d.dim_param}
    assert len(dims) == 2, dims  # batch and time are dynamic
    batch, time = sorted(dims, key=lambda d: [d.dim_param for d in
                                              model.graph.input[0].type.tensor_type.shape.dim].index(d))
    pruned = prune_and_check(path, tmp_path, [{batch: 2, time: 48}, {batch: 3, time: 81}], ratio=0.5)
    dg = pruned.plan.depgraph
    # the stem's channels (read in both branches), both branches' hidden widths, and the branches' common output
    roots = {g.root.tensor for g in dg.prunable_groups()}
    assert roots == {"stem.weight", "high.0.weight", "low.0.weight", "high.2.weight"}, roots
    assert pruned.report["macs"]["after"] < 0.6 * pruned.report["macs"]["before"]
    masked = op.masked_model(dg, pruned.plan.groups)
    written = tmp_path / f"switch.{exporter}.pruned.onnx"  # where prune_and_check saved it
    rng = np.random.default_rng(0)
    for flag in (1.0, -1.0):  # then branch, else branch
        feeds = [{"wave": rng.standard_normal((n, 1, t)).astype(np.float32), "flag": np.array([flag], np.float32)}
                 for n, t in ((2, 40), (1, 97))]
        comparison = compare(masked, str(written), feeds, oracle=True, exact=True)
        assert comparison.passed, comparison.summary()
        reference = compare(masked, path, feeds, oracle=True, exact=True)
        assert not reference.passed  # the oracle is not the original: channels really were removed
