"""``onnxprune apply-plan``: apply a plan JSON to the PyTorch module the ONNX model was exported from and save the
pruned module, ready for fine-tuning. A click command for ``onnxprune.cli`` to register
(``main.add_command(apply_plan_command)``)."""

from __future__ import annotations

import importlib
import importlib.util
import os

import click
import torch
from torch import nn

from onnxprune.errors import OnnxPruneError
from onnxprune.torch.prune import apply_plan


def load_module(spec: str) -> nn.Module:
    """The torch module ``spec`` names: a file saved with ``torch.save(module)`` (.pt/.pth), or ``MODULE:NAME`` /
    ``path/file.py:NAME`` where NAME is an nn.Module or a callable returning one (called without arguments)."""
    if os.path.isfile(spec) and spec.endswith((".pt", ".pth")):
        loaded = torch.load(spec, map_location="cpu", weights_only=False)
    else:
        where, sep, attr = spec.rpartition(":")
        if not sep or not where or not attr:
            raise click.BadParameter(f"'{spec}' is not a .pt file, MODULE:NAME or FILE.py:NAME", param_hint="--module")
        if where.endswith(".py"):
            if not os.path.isfile(where):
                raise click.BadParameter(f"no file {where}", param_hint="--module")
            found = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(where))[0], where)
            source = importlib.util.module_from_spec(found)
            found.loader.exec_module(source)
        else:
            source = importlib.import_module(where)
        if not hasattr(source, attr):
            raise click.BadParameter(f"{where} has no attribute {attr}", param_hint="--module")
        loaded = getattr(source, attr)
        loaded = loaded if isinstance(loaded, nn.Module) else loaded()
    if not isinstance(loaded, nn.Module):
        raise click.BadParameter(f"'{spec}' gives a {type(loaded).__name__}, not a torch.nn.Module",
                                 param_hint="--module")
    return loaded


@click.command("apply-plan")
@click.argument("model_path", metavar="ORIGINAL.onnx", type=click.Path(exists=True, dir_okay=False))
@click.argument("plan_path", metavar="PLAN.json", type=click.Path(exists=True, dir_okay=False))
@click.option("--module", "module_spec", required=True,
              help="The torch module ORIGINAL.onnx was exported from: a torch.save'd .pt file, or MODULE:NAME / "
                   "FILE.py:NAME (an nn.Module or a function returning one).")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False),
              help="A state_dict (.pt) to load into the module first (the weights the ONNX model was exported with).")
@click.option("-o", "--output", "output_path", required=True, type=click.Path(dir_okay=False),
              help="Where to torch.save the pruned module (the whole module: its shapes differ from the class's).")
@click.option("--state-dict", "state_dict_path", type=click.Path(dir_okay=False),
              help="Also save the pruned state_dict here.")
@click.option("--verbose", "-v", is_flag=True, help="List every sliced tensor and changed attribute.")
def apply_plan_command(model_path: str, plan_path: str, module_spec: str, weights: str | None, output_path: str,
                       state_dict_path: str | None, verbose: bool) -> None:
    """Slice a PyTorch module as PLAN.json (from `prune --plan`) pruned ORIGINAL.onnx, to fine-tune it in torch.

    Parameters are found by their exported names, or by the node scopes both torch exporters write and their
    values (BatchNorm folded into a Conv is found and sliced with it); size attributes (out_channels, num_features,
    hidden_size, num_heads, ...) are updated so the module runs and exports again."""
    module = load_module(module_spec)
    if weights:
        module.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    module.eval()
    try:
        result = apply_plan(module, plan_path, model_path)
    except OnnxPruneError as exc:
        raise click.ClickException(" ".join(str(exc).split())) from None
    tmp = f"{output_path}.tmp"
    torch.save(module, tmp)
    os.replace(tmp, output_path)
    if state_dict_path:
        torch.save(module.state_dict(), state_dict_path)
    before = sum(_prod(old) for old, _ in result.sliced.values())
    after = sum(_prod(new) for _, new in result.sliced.values())
    click.echo(f"sliced {len(result.sliced)} tensors ({before} -> {after} values), changed "
               f"{sum(len(a) for a in result.attributes.values())} attributes in {len(result.attributes)} modules"
               + (f", {len(result.folded_bn)} folded BatchNorms" if result.folded_bn else "")
               + f"; saved {output_path}")
    if verbose:
        click.echo(result.summary())


def _prod(shape: list[int]) -> int:
    total = 1
    for dim in shape:
        total *= int(dim)
    return total
