"""Every zoo model, every criterion, ratios 0.3 and 0.5: the planned model is valid (``dg.prune`` runs the checker
and onnxruntime) and, when every pruned group is mask-exact, equals the mask oracle. The default run covers the
TorchScript export with BatchNormalization kept; the slow sweep adds the other exporter variants."""

from __future__ import annotations

import warnings

import pytest

import onnxprune as op
from onnxprune import models
from onnxprune.scoring.importance import CRITERIA, ImportanceOptions, compute_importance
from onnxprune.search import drop_failing_groups
from onnxprune.selection import SelectionOptions, select
from onnxprune.validation.oracle import compare
from tests.support.checked import checked_prune

RATIOS = (0.3, 0.5)
NAMES = models.names("cnn", "rnn")  # transformers: tests/test_transformers.py
OTHER_VARIANTS = [("torchscript", False), ("dynamo", True), ("dynamo", False)]


def check_model(path: str) -> None:
    dg = op.analyse_model(path)
    assert dg.prunable_groups()
    for criterion in CRITERIA:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # random calibration data
            scores = compute_importance(dg, ImportanceOptions(criterion, samples=2))
        for ratio in RATIOS:
            notes: list[str] = []
            plan = drop_failing_groups(dg, select(dg, scores, SelectionOptions(ratio=ratio)), notes)
            assert plan and not notes, (criterion, ratio, notes)
            result = checked_prune(dg, plan)
            if all(dg.group(g).exact for g in plan):
                report = compare(op.masked_model(dg, plan), result.model)
                assert report.passed, (criterion, ratio, report)


@pytest.mark.parametrize("name", NAMES)
def test_every_criterion_prunes_the_zoo(exported_model, name):
    check_model(exported_model(name, "torchscript", True))


@pytest.mark.slow
@pytest.mark.parametrize("exporter,keep_bn", OTHER_VARIANTS, ids=[f"{e}-{'bn' if k else 'folded'}"
                                                                  for e, k in OTHER_VARIANTS])
@pytest.mark.parametrize("name", NAMES)
def test_every_criterion_prunes_the_zoo_all_exporters(exported_model, name, exporter, keep_bn):
    check_model(exported_model(name, exporter, keep_bn))
