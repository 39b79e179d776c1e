"""Cross-check with Torch-Pruning: on zoo models exported by TorchScript with BatchNormalization kept (initializer
names = torch parameter names), ``l2`` importance at ratio 0.5 removes the same channels as Torch-Pruning's
MetaPruner with GroupMagnitudeImportance(p=2) on the torch model, group for group, and the importance vectors
themselves agree (after the normalisation by their mean, to 1e-4).

Groups are matched by the set of parameters the importance reads (weights on their pruned axis, norm scales).
Torch-Pruning reads fewer parameters than we do in two places, and the check restricts our roles to the ones it
reads so that the ranking mechanics are compared on equal terms:
- depthwise conv weights: its importance compares each member's pruning function with the ordinary Conv
  pruner's, so DepthwiseConvPruner members (MobileNet) are skipped;
- InstanceNorm / GroupNorm scales: not in its default ``target_types`` (BatchNorm, LayerNorm, Conv, Linear).
Groups whose units differ are skipped (not failed): GroupNorm, where we remove whole normalisation groups (so the
other groups' statistics stay the same, mask-exact) and Torch-Pruning removes the same position in every group.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import onnxprune as op
from onnxprune import models
from onnxprune.axes import ChannelAxis
from onnxprune.scoring.importance import ImportanceOptions, compute_importance, parameter_roles
from onnxprune.selection import SelectionOptions, select

tp = pytest.importorskip("torch_pruning")
torch = pytest.importorskip("torch")

RATIO = 0.5
# Every CNN of the zoo but shufflenet_v2 (Torch-Pruning 1.6.1 cannot build its graph: ZeroDivisionError in
# update_reshape_index_mapping on the channel shuffle) and the LSTMs (the exporter fuses and gate-reorders LSTM
# weights into new initializers, so names do not map).
MODELS = ["resnet_basic", "vgg_bn", "mobilenet_v2", "densenet", "resnet_bottleneck", "resnext", "mobilenet_v3",
          "inception", "unet", "audio_conv1d", "instancenorm_net", "groupnorm_net", "resnet_deep8"]


def _counted_by_tp(group, names: dict) -> set[tuple[str, int]]:
    """(parameter name, axis) of every member GroupMagnitudeImportance reads, as it decides (see its __call__)."""
    from torch_pruning.pruner import function as fn

    out_fns = (fn.prune_conv_out_channels, fn.prune_linear_out_channels)
    in_fns = (fn.prune_conv_in_channels, fn.prune_linear_in_channels)
    found = set()
    for dep, _ in group:
        layer, prune_fn = dep.layer, dep.pruning_fn
        transposed = bool(getattr(layer, "transposed", False))
        if layer not in names:
            continue
        if prune_fn in out_fns:
            found.add((f"{names[layer]}.weight", int(transposed)))
        elif prune_fn in in_fns:
            found.add((f"{names[layer]}.weight", int(not transposed)))
        elif prune_fn in (fn.prune_batchnorm_out_channels, fn.prune_layernorm_out_channels) \
                and getattr(layer, "weight", None) is not None:
            found.add((f"{names[layer]}.weight", 0))
    return found


def _root(dep, names: dict, is_out) -> tuple[str, int]:
    transposed = bool(getattr(dep.layer, "transposed", False))
    return f"{names[dep.layer]}.weight", int(transposed) if is_out(dep.pruning_fn) else int(not transposed)


def torch_pruning_plan(name: str, blocked_outputs: set[tuple[str, int]]) -> list[dict]:
    """Torch-Pruning's choice at RATIO: per group, the parameters read, the root (name, axis), the removed idxs
    and the importance per root channel (after its channel-group averaging, divided by its mean)."""
    spec = models.ZOO[name]
    model = spec.build()
    names = {m: n for n, m in model.named_modules()}
    ignored = [m for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d,
               torch.nn.ConvTranspose2d, torch.nn.Linear))
               and (f"{n}.weight", int(bool(getattr(m, "transposed", False)))) in blocked_outputs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = tp.pruner.MetaPruner(model, spec.example_inputs(), pruning_ratio=RATIO, ignored_layers=ignored,
                                      importance=tp.importance.GroupMagnitudeImportance(p=2))
        is_out = pruner.DG.is_out_channel_pruning_fn
        scores = {}
        for group in pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers,
                                              root_module_types=pruner.root_module_types):
            imp = pruner.estimate_importance(group)
            if imp is not None:
                dim_imp = imp.view(pruner._get_channel_groups(group), -1).mean(dim=0).double().numpy()
                scores[_root(group[0][0], names, is_out)] = dim_imp / dim_imp.mean()
        groups = []
        for group in pruner.step(interactive=True):
            root = _root(group[0][0], names, is_out)
            groups.append({"counted": _counted_by_tp(group, names), "root": root, "scores": scores[root],
                           "removed": sorted(int(i) for i in group[0][1])})
    return groups


def crosscheck(path: str, name: str) -> dict:
    """Compare our l2 plan with Torch-Pruning's; returns counts and the disagreements (empty when all agree)."""
    dg = op.analyse_model(path)
    blocked = {(ax.tensor, ax.axis) for g in dg.channel_groups() if not g.prunable for ax in g.constants()}
    theirs = torch_pruning_plan(name, blocked)
    read_by_tp = {p for g in theirs for p, _ in g["counted"]}
    roles = {t: r for t, r in parameter_roles(dg).items() if t in read_by_tp}
    scores = compute_importance(dg, ImportanceOptions("l2"), roles=roles)
    plan = select(dg, scores, SelectionOptions(ratio=RATIO, speed_multiples=False))  # Torch-Pruning never rounds
    ours = {frozenset((ax.tensor, ax.axis) for ax in g.constants() if ax.tensor in roles): g
            for g in dg.prunable_groups()}
    result = {"agree": [], "disagree": [], "skipped": [], "torch_pruning_groups": len(theirs), "max_score_gap": 0.0}
    for entry in theirs:
        group = ours.get(frozenset(entry["counted"]))
        root = ChannelAxis(*entry["root"])
        if group is None or root not in group.members:
            result["skipped"].append((entry["root"], "grouped differently"))
            continue
        table = group.members[root]
        if not set(entry["removed"]) <= set(table.ravel().tolist()) or \
                len(entry["removed"]) % table.shape[1] != 0 or \
                not np.all(np.isin(table[np.isin(table, entry["removed"]).any(axis=1)], entry["removed"])):
            result["skipped"].append((entry["root"], "units differ (its removal is not a union of our units)"))
            continue
        mine = group.indices(root, plan.get(group.id, [])).tolist()
        score_gap = float(np.max(np.abs(entry["scores"][table[:, 0]] - scores[group.id])))
        result["max_score_gap"] = max(result["max_score_gap"], score_gap)
        if mine == entry["removed"] and score_gap < 1e-4:
            result["agree"].append(entry["root"])
        else:
            result["disagree"].append({"group": group.id, "root": entry["root"], "torch_pruning": entry["removed"],
                                       "onnxprune": mine, "score_gap": score_gap})
    return result


@pytest.mark.parametrize("name", [n for n in MODELS if n != "groupnorm_net"])
def test_l2_matches_torch_pruning(exported_model, name):
    result = crosscheck(exported_model(name, "torchscript", True), name)
    assert not result["disagree"], result["disagree"]
    assert not result["skipped"], result["skipped"]
    assert len(result["agree"]) == result["torch_pruning_groups"] >= 1


def test_groupnorm_units_differ_by_design(exported_model):
    """Both GroupNorm groups: we remove whole normalisation groups, Torch-Pruning one position per group."""
    result = crosscheck(exported_model("groupnorm_net", "torchscript", True), "groupnorm_net")
    assert not result["disagree"], result["disagree"]
    assert len(result["skipped"]) == result["torch_pruning_groups"] == 2
    assert all(reason.startswith("units differ") for _, reason in result["skipped"])
