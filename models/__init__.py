"""Tiny PyTorch test models and a robust ONNX export helper.

``ZOO`` maps a name to a :class:`ModelSpec`; :func:`export` turns a spec into one self-contained, checked
``.onnx`` file with the TorchScript or the dynamo exporter, with BatchNormalization kept or folded;
:func:`export_variants` / :func:`export_all` export several variants, tracing each model once per exporter.

All models are narrow (widths 8-48) and take inputs of batch 2 (3x32x32 images, a 400-sample waveform, 12 tokens),
so one export plus an onnxruntime run costs milliseconds (TorchScript) to about a second (dynamo).

Transformers (kind "transformer", see ``models.transformers``): hidden 32, 4 heads of 8 (GQA: 2 KV heads), MLP 64,
2 layers. Token models take ``input_ids`` (and BERT's ``attention_mask``) with dynamic batch *and* sequence axes in
both exporters; image models have a dynamic batch only, since their sequence length follows from the image size.
``names("cnn", "rnn")`` lists the models of given kinds; kind "real" holds architectures at published widths
(``models.real_exports``: ShuffleNetV2 1.0x, ``nn.TransformerEncoderLayer`` encoders), kept out of the sweeps.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import onnx
import torch
from torch import nn

from . import cnn, detectors, diffusion, graph_nets, mobile, norm, real_exports, real_width, recurrent, transformers

__all__ = ["ModelSpec", "ZOO", "ExportError", "export", "export_variants", "export_all", "deep_spec", "resnet50_spec",
           "real_width_spec", "REAL_WIDTH", "EXPORTERS"]

EXPORTERS = ("torchscript", "dynamo")
TORCHSCRIPT_OPSET = 17


class ExportError(RuntimeError):
    """An export failed, or its result did not pass ``onnx.checker.check_model(full_check=True)``."""


@dataclass(frozen=True)
class ModelSpec:
    """How to build and feed one zoo model.

    ``build()`` returns the model in eval mode, built after ``torch.manual_seed(0)``; normalisation layers get
    seeded non-trivial statistics/affine parameters so folding them changes the weights for real.
    ``example_inputs(batch=2)`` returns a tuple of tensors (deterministic for a given batch).
    ``dynamic_axes`` is TorchScript-style and also names the output's dynamic axes; for the dynamo exporter the
    input entries are turned into ``dynamic_shapes``.
    ``bn_unfoldable`` is how many BatchNormalization nodes survive folding (BN not directly after a Conv).
    """

    name: str
    build: Callable[[], nn.Module]
    example_inputs: Callable[..., tuple[torch.Tensor, ...]]
    input_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]
    kind: str  # "cnn", "rnn" or "transformer"
    output_names: tuple[str, ...] = ("output",)
    bn_unfoldable: int = 0
    description: str = ""
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ building
def _randomize_norms(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.InstanceNorm2d)) and m.affine:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            if isinstance(m, nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5)


def _builder(ctor: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        torch.manual_seed(0)
        model = ctor()
        _randomize_norms(model)
        return model.eval()
    return build


def _images(batch: int = 2) -> tuple[torch.Tensor, ...]:
    return (torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch)),)


def _waveform(batch: int = 2) -> tuple[torch.Tensor, ...]:
    return (torch.randn(batch, 1, 400, generator=torch.Generator().manual_seed(batch)),)


def _features(batch: int = 2) -> tuple[torch.Tensor, ...]:
    return (torch.randn(batch, 8, 20, generator=torch.Generator().manual_seed(batch)),)


def _tokens(batch_first: bool) -> Callable[..., tuple[torch.Tensor, ...]]:
    def make(batch: int = 2) -> tuple[torch.Tensor, ...]:
        shape = (batch, 12) if batch_first else (12, batch)
        return (torch.randint(0, 100, shape, generator=torch.Generator().manual_seed(batch)),)
    return make


_BATCH = {"x": {0: "batch"}, "output": {0: "batch"}}


def _cnn(name: str, ctor: Callable[[], nn.Module], inputs=_images, bn_unfoldable: int = 0,
         description: str = "") -> ModelSpec:
    return ModelSpec(name, _builder(ctor), inputs, ("x",), _BATCH, "cnn", bn_unfoldable=bn_unfoldable,
                     description=description)


def _lstm(name: str, bidirectional: bool, batch_first: bool) -> ModelSpec:
    axes = {"tokens": {0 if batch_first else 1: "batch"}, "output": {0: "batch"}}
    return ModelSpec(name, _builder(lambda: recurrent.LSTMText(bidirectional, batch_first)), _tokens(batch_first),
                     ("tokens",), axes, "rnn",
                     description=f"Embedding -> 2-layer LSTM (bidirectional={bidirectional}, "
                                 f"batch_first={batch_first}) -> Linear")


def deep_spec(num_blocks: int) -> ModelSpec:
    """Spec for ``resnet_deep(num_blocks)`` (scaling benchmark); not in ZOO except for ``resnet_deep8``."""
    return _cnn(f"resnet_deep{num_blocks}", lambda: cnn.resnet_deep(num_blocks),
                description=f"{num_blocks} identity basic blocks at width 16")


def resnet50_spec(size: int = 224) -> ModelSpec:
    """ResNet-50 at real widths (torchvision's layout, random weights) on ``size`` x ``size`` images, batch 1:
    for benchmarks and the demo, not in ZOO (too big for the test sweeps)."""
    def inputs(batch: int = 1) -> tuple[torch.Tensor, ...]:
        return (torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch)),)

    return ModelSpec(f"resnet50_{size}", _builder(cnn.ResNet50Like), inputs, ("x",),
                     {"x": {0: "batch"}, "output": {0: "batch"}}, "cnn",
                     description="ResNet-50 shape, bottlenecks [3, 4, 6, 3], widths 64-2048")


REAL_WIDTH = ("resnet50", "densenet121", "vit_b16", "vgg16")


def real_width_spec(name: str, size: int = 224) -> ModelSpec:
    """Spec of a classic architecture at real widths (``models.real_width``; random weights, batch 1, ``size`` x
    ``size`` images, dynamic batch): one of ``REAL_WIDTH``. For benchmarks, not in ZOO. ViT-B/16 takes 224 only."""
    if name == "resnet50":
        return resnet50_spec(size)
    ctors = {"densenet121": (real_width.DenseNet121, "cnn", "DenseNet-121: growth 32, blocks [6, 12, 24, 16]"),
             "vgg16": (real_width.VGG16, "cnn", "VGG-16 (configuration D, no BN), classifier 25088-4096-4096-1000"),
             "vit_b16": (real_width.vit_b16, "transformer", "ViT-B/16: width 768, 12 heads, MLP 3072, 12 blocks")}
    if name not in ctors:
        raise KeyError(f"unknown real-width model {name!r}; known: {', '.join(REAL_WIDTH)}")
    ctor, kind, description = ctors[name]

    def inputs(batch: int = 1) -> tuple[torch.Tensor, ...]:
        return (torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch)),)

    return ModelSpec(f"{name}_{size}", _builder(ctor), inputs, ("x",), {"x": {0: "batch"}, "output": {0: "batch"}},
                     kind, description=description)


def _token_inputs(names: tuple[str, ...]) -> Callable[..., tuple[torch.Tensor, ...]]:
    """input_ids [batch, seq] (and an attention_mask whose second row pads the last quarter) for token models."""
    def make(batch: int = 2, seq: int = 12) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(batch * 100 + seq)
        ids = torch.randint(0, transformers.VOCAB, (batch, seq), generator=g)
        mask = torch.ones(batch, seq, dtype=torch.int64)
        if batch > 1:
            mask[1, seq - seq // 4:] = 0
        return (ids, mask)[:len(names)]
    return make


def _transformer_images(batch: int = 2, seq: int | None = None) -> tuple[torch.Tensor, ...]:
    return _images(batch)


def _transformer(name: str, ctor: Callable[..., nn.Module], inputs: tuple[str, ...], description: str,
                 output_axes: dict[int, str], heads: int = transformers.HEADS, kv_heads: int | None = None,
                 hidden_output: bool = False, native: bool = True) -> ModelSpec:
    """Spec of a transformer: token inputs with dynamic batch and sequence, images with dynamic batch only (the
    sequence length is fixed by the image size: 16 patches + class token). ``extra`` holds the sizes tests compute
    expectations from; for models/ transformers, ``extra["ctor"]`` builds the same architecture at other sizes
    (keyword arguments dim, heads, kv_heads, mlp, head_dim, pooler)."""
    if inputs == ("x",) or inputs == ("pixel_values",):
        axes = {inputs[0]: {0: "batch"}}
        make = _transformer_images
    else:
        axes = {n: {0: "batch", 1: "seq"} for n in inputs}
        make = _token_inputs(inputs)
    axes["output"] = output_axes
    llama = "llama" in name
    extra = {"hidden": transformers.HIDDEN, "heads": heads, "kv_heads": kv_heads or heads,
             "head_dim": transformers.HEAD_DIM, "mlp": transformers.MLP, "layers": transformers.LAYERS,
             "dynamic_seq": "seq" in axes[inputs[0]].values(), "tokens": None if "seq" in axes[inputs[0]].values()
             else 17, "hidden_output": hidden_output, "bias": not llama, "swiglu": llama,
             "ctor": ctor if native else None}
    build = _builder(lambda: transformers.randomize_constant_parameters(ctor()))
    return ModelSpec(name, build, make, inputs, axes, "transformer", description=description, extra=extra)


def seed_system_specs() -> list[ModelSpec]:
    """The paper's other seed systems (kinds "graph", "detector", "diffusion"): GCN/GAT on a graph with dynamic
    node and edge counts, DGCNN on point clouds, YOLOv8/YOLO11-style detectors with dynamic H/W, a diffusion UNet."""
    graph_axes = {"x": {0: "nodes"}, "edge_index": {1: "edges"}, "output": {0: "nodes"}}
    image_axes = {"x": {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch", 2: "anchors"}}
    unet_axes = {"sample": {0: "batch"}, "timestep": {0: "batch"}, "output": {0: "batch"}}
    return [
        ModelSpec("gcn", _builder(graph_nets.GCN), graph_nets.graph_inputs, ("x", "edge_index"), graph_axes, "graph",
                  description="2 GCNConv layers (index_add aggregation, degree normalisation) -> Linear"),
        ModelSpec("gat", _builder(graph_nets.GAT), graph_nets.graph_inputs, ("x", "edge_index"), graph_axes, "graph",
                  description="GATConv 4 heads x 8 (concat) -> GATConv 2 heads x 8 (mean) -> Linear",
                  extra={"heads": 4, "head_dim": 8}),
        ModelSpec("dgcnn", _builder(graph_nets.DGCNN), graph_nets.point_cloud, ("x",), _BATCH, "graph",
                  description="2 EdgeConv blocks (knn, [B, C, N, k] views, max over k) -> Conv1d -> Linear"),
        ModelSpec("yolov8", _builder(detectors.yolov8), detectors.images, ("x",), image_axes, "detector",
                  description="YOLOv8n layout at width 8: C2f, SPPF, PAN neck, DFL Detect head, dynamic H/W"),
        ModelSpec("yolo11", _builder(detectors.yolo11), detectors.images, ("x",), image_axes, "detector",
                  description="YOLO11n layout at width 8: C3k2, SPPF, C2PSA, PAN neck, DFL Detect head"),
        ModelSpec("unet2d", _builder(diffusion.UNet2D), diffusion.inputs, ("sample", "timestep"), unet_axes,
                  "diffusion", description="diffusers UNet2DModel layout: GroupNorm res blocks, time embedding, "
                  "mid attention, skip concats"),
    ]


def _hf(kind: str) -> Callable[[], nn.Module]:
    return lambda: transformers.hf_model(kind)


_SPECS = [
    _cnn("resnet_basic", cnn.resnet_basic, description="ResNet-18-like, basic blocks, 1x1 downsample shortcuts"),
    _cnn("resnet_bottleneck", cnn.resnet_bottleneck, description="ResNet-50-like bottlenecks, stages [2,1,1,1]"),
    deep_spec(8),
    _cnn("resnext", cnn.resnext, description="bottlenecks with groups=4 3x3 conv"),
    _cnn("vgg_bn", cnn.VGG, description="VGG-BN, flatten of a 16x4x4 map into Linear(256, 32)"),
    _cnn("mobilenet_v2", mobile.MobileNetV2, description="inverted residuals, depthwise, ReLU6"),
    _cnn("mobilenet_v3", mobile.MobileNetV3, description="SE blocks (Hardsigmoid gate), Hardswish"),
    # BN after Concat / before Conv (pre-activation) cannot fold: 5 dense-layer norm1, transition, final norm.
    _cnn("densenet", cnn.DenseNet, bn_unfoldable=7, description="dense blocks (cat([x, new])), transition"),
    _cnn("inception", cnn.Inception, description="4-branch concat: 1x1, 3x3, 5x5 / double 3x3, pool-proj"),
    _cnn("shufflenet_v2", mobile.ShuffleNetV2, description="chunk split, concat, channel shuffle, 2-branch down"),
    _cnn("unet", cnn.UNet, description="encoder/decoder, ConvTranspose2d up, skip concat, 1x1 head"),
    _cnn("groupnorm_net", norm.GroupNormNet, description="GroupNorm + SiLU"),
    _cnn("instancenorm_net", norm.InstanceNormNet, description="InstanceNorm2d + PReLU(16) + LeakyReLU"),
    _cnn("audio_conv1d", recurrent.AudioNet, inputs=_waveform, description="Conv1d/BN/ReLU stack on a waveform"),
    _lstm("lstm_text", False, False),
    _lstm("lstm_text_bi", True, False),
    _lstm("lstm_text_bf", False, True),
    _lstm("lstm_text_bi_bf", True, True),
    ModelSpec("conv_lstm", _builder(recurrent.ConvLSTM), _features, ("x",), _BATCH, "rnn",
              description="Conv1d front end -> permute -> LSTM -> Linear"),
    _transformer("vit", transformers.ViT, ("x",), "ViT: Conv patch embedding, class token, position embedding, "
                 "2 pre-LN blocks (4 heads, GELU MLP), classifier", {0: "batch"}),
    _transformer("bert_encoder", transformers.BertEncoder, ("input_ids", "attention_mask"),
                 "BERT-style: token + position embeddings, LN, 2 post-LN blocks, padding mask, pooler, classifier",
                 {0: "batch"}),
    _transformer("gpt_decoder", transformers.GPTDecoder, ("input_ids",),
                 "GPT-style: causal mask (triu), 2 pre-LN blocks, final LN, LM head tied to the embedding",
                 {0: "batch", 1: "seq"}),
    _transformer("llama_decoder", transformers.LlamaDecoder, ("input_ids",),
                 "LLaMA-style: RMSNorm, rotary embeddings, GQA (4 query / 2 kv heads), SwiGLU, LM head",
                 {0: "batch", 1: "seq"}, kv_heads=transformers.KV_HEADS),
    _transformer("hf_bert", _hf("bert"), transformers.HF_INPUTS["bert"], "transformers BertModel (random weights, "
                 "eager attention, no pooler), last_hidden_state", {0: "batch", 1: "seq"}, hidden_output=True,
                 native=False),
    _transformer("hf_vit", _hf("vit"), transformers.HF_INPUTS["vit"], "transformers ViTModel (random weights, "
                 "eager attention, no pooler), last_hidden_state", {0: "batch"}, hidden_output=True, native=False),
    _transformer("hf_gpt2", _hf("gpt2"), transformers.HF_INPUTS["gpt2"], "transformers GPT2Model (random "
                 "weights, eager attention, no cache), last_hidden_state", {0: "batch", 1: "seq"},
                 hidden_output=True, native=False),
    _transformer("hf_llama", _hf("llama"), transformers.HF_INPUTS["llama"], "transformers LlamaForCausalLM "
                 "(random weights, eager attention, GQA 4/2 heads, no cache), logits", {0: "batch", 1: "seq"},
                 kv_heads=transformers.KV_HEADS, native=False),
]

def _images64(batch: int = 2) -> tuple[torch.Tensor, ...]:
    return (torch.randn(batch, 3, 64, 64, generator=torch.Generator().manual_seed(batch)),)


def _encoder(batch_first: bool) -> ModelSpec:
    axes = {"tokens": {0 if batch_first else 1: "batch"}, "output": {0: "batch"}}
    return ModelSpec(f"torch_encoder{'_bf' if batch_first else ''}",
                     _builder(lambda: real_exports.TransformerEncoderClassifier(batch_first)), _tokens(batch_first),
                     ("tokens",), axes, "real",
                     description=f"Embedding -> 2 nn.TransformerEncoderLayer (d_model 32, 4 heads, packed "
                                 f"in-projection, batch_first={batch_first}) -> mean -> Linear",
                     extra={"hidden": 32, "heads": 4, "head_dim": 8, "mlp": 64, "layers": 2})


_SPECS += [  # issue 8: architectures as published (models.real_exports)
    ModelSpec("shufflenet_v2_x1_0", _builder(real_exports.ShuffleNetV2), _images64, ("x",), _BATCH, "real",
              description="ShuffleNetV2 1.0x as torchvision writes it (24, 116/232/464, 1024) on 3x64x64"),
    _encoder(True),
    _encoder(False),
    *seed_system_specs(),
]

ZOO: dict[str, ModelSpec] = {s.name: s for s in _SPECS}


def names(*kinds: str) -> list[str]:
    """Names of the zoo models of the given kinds ('cnn', 'rnn', 'transformer'), or of all of them."""
    return [name for name, spec in ZOO.items() if not kinds or spec.kind in kinds]


# ------------------------------------------------------------------------------------------------ export
@contextlib.contextmanager
def _quiet():
    """Silence the exporters' warnings, logging and stdout chatter; captured stdout is kept for error messages."""
    buf = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(buf):
            warnings.simplefilter("ignore")
            yield buf
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _spec(name_or_spec: str | ModelSpec) -> ModelSpec:
    if isinstance(name_or_spec, ModelSpec):
        return name_or_spec
    try:
        return ZOO[name_or_spec]
    except KeyError:
        raise KeyError(f"unknown model {name_or_spec!r}; known: {', '.join(ZOO)}") from None


def _check(path: str, what: str) -> None:
    model = onnx.load(path, load_external_data=False)
    external = [t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise ExportError(f"{what}: {path} uses external data for {external[:5]}; expected one self-contained file")
    try:
        onnx.checker.check_model(path, full_check=True)
    except Exception as e:  # onnx raises ValidationError / InferenceError
        raise ExportError(f"{what}: {path} fails onnx.checker.check_model(full_check=True): {e}") from e


def _export_torchscript(spec: ModelSpec, model: nn.Module, args: tuple, path: str, keep_bn: bool,
                        opset: int | None) -> None:
    with _quiet():
        torch.onnx.export(model, args, path, dynamo=False, input_names=list(spec.input_names),
                          output_names=list(spec.output_names), dynamic_axes=spec.dynamic_axes,
                          do_constant_folding=not keep_bn, opset_version=opset or TORCHSCRIPT_OPSET)


def _dynamo_program(spec: ModelSpec, model: nn.Module, args: tuple, opset: int | None):
    dims: dict[str, torch.export.Dim] = {}
    shapes = []
    for name in spec.input_names:
        axes = spec.dynamic_axes.get(name, {})
        shapes.append({ax: dims.setdefault(dim, torch.export.Dim(dim)) for ax, dim in axes.items()} or None)
    with _quiet() as out:
        try:
            return torch.onnx.export(model, args, dynamo=True, optimize=False, verbose=False, report=False,
                                     input_names=list(spec.input_names), output_names=list(spec.output_names),
                                     dynamic_shapes=tuple(shapes), opset_version=opset)
        except Exception as e:
            raise ExportError(f"dynamo export of {spec.name} failed: {e}\n{out.getvalue()}") from e


def _export(spec: ModelSpec, targets: dict[tuple[str, bool], str], opset: int | None) -> dict[tuple[str, bool], str]:
    for exporter, _ in targets:
        if exporter not in EXPORTERS:
            raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    model = spec.build()
    args = spec.example_inputs()
    for exporter in dict.fromkeys(e for e, _ in targets):
        if exporter == "torchscript":
            for kb in (True, False):
                if (exporter, kb) not in targets:
                    continue
                try:
                    _export_torchscript(spec, model, args, targets[(exporter, kb)], kb, opset)
                except Exception as e:
                    raise ExportError(f"torchscript export of {spec.name} failed: {e}") from e
        else:
            program = _dynamo_program(spec, model, args, opset)
            for kb in (True, False):  # True first: optimize() mutates the program in place
                if (exporter, kb) not in targets:
                    continue
                with _quiet():
                    if not kb:
                        program.optimize()
                    program.save(targets[(exporter, kb)], external_data=False)
    for (exporter, kb), path in targets.items():
        _check(path, f"{spec.name} ({exporter}, keep_bn={kb})")
    return targets


def export_variants(name_or_spec: str | ModelSpec, out_dir: str | os.PathLike,
                    exporters: Iterable[str] = EXPORTERS, keep_bn: Iterable[bool] = (True, False),
                    opset: int | None = None) -> dict[tuple[str, bool], str]:
    """Export one model in several (exporter, keep_bn) variants into ``out_dir`` (see :func:`export`).

    Files are named ``{name}.{exporter}.{bn|nobn}.onnx``. The dynamo exporter traces the model once: the
    ``keep_bn=True`` file is saved from the unoptimised program, then ``ONNXProgram.optimize()`` (exactly what
    ``torch.onnx.export(..., optimize=True)`` runs) produces the ``keep_bn=False`` file.
    Returns ``{(exporter, keep_bn): path}``.
    """
    spec = _spec(name_or_spec)
    os.makedirs(out_dir, exist_ok=True)
    targets = {(e, kb): os.path.join(os.fspath(out_dir), f"{spec.name}.{e}.{'bn' if kb else 'nobn'}.onnx")
               for e in exporters for kb in keep_bn}
    return _export(spec, targets, opset)


def export(name_or_spec: str | ModelSpec, path: str | os.PathLike, exporter: str = "torchscript",
           keep_bn: bool = True, opset: int | None = None) -> str:
    """Export a zoo model (name or :class:`ModelSpec`) to ``path``: one self-contained .onnx file (no external
    data), checked with ``onnx.checker.check_model(path, full_check=True)``; raises :class:`ExportError` if the
    export or the check fails, ``KeyError`` for an unknown name, ``ValueError`` for an unknown exporter.

    ``exporter="torchscript"``: ``torch.onnx.export(dynamo=False, do_constant_folding=not keep_bn,
    opset_version=opset or 17)`` with ``spec.dynamic_axes`` (dynamic batch on the inputs and the output).
    keep_bn=True keeps every BatchNormalization; keep_bn=False folds each BN that directly follows a Conv
    (TorchScript's eval-mode Conv+BN fusion only happens with constant folding on).

    ``exporter="dynamo"``: ``torch.onnx.export(dynamo=True, optimize=not keep_bn, verbose=False)`` (the
    optimisation is run as ``ONNXProgram.optimize()`` on the same trace, which is what ``optimize=True`` does),
    then ``ONNXProgram.save(path, external_data=False)``. ``opset=None`` keeps the exporter's default (20 with
    torch 2.13); other opsets go through the exporter's version converter. The batch axis is dynamic via
    ``dynamic_shapes`` (one ``torch.export.Dim`` per axis name) for every zoo model, the LSTMs included; all
    other axes (sequence length, H, W) are static. optimize=False keeps every BatchNormalization, together with
    the un-simplified graph: each bias-free Conv gets a computed zero bias
    ``Expand(CastLike(0, x), Shape(W, start=0, end=1))``, ``chunk`` is ``SplitToSequence`` + ``SequenceAt``,
    reshape targets are ``Concat``s of a symbolic batch and constants, and LSTM weights are rebuilt at run time
    from torch's parameters (Slice per gate, Concat into ONNX i-o-f-c order, Unsqueeze). optimize=True folds
    each BN that directly follows a Conv, and all of that into constants (``Split``, constant Reshape shapes,
    LSTM W/R/B initializers named ``val_*``).

    With either exporter, BN that does not directly follow a Conv (DenseNet's pre-activation BN after a
    Concat, ReLU or AveragePool, its transition and final BN) survives keep_bn=False; ``spec.bn_unfoldable``
    says how many.
    """
    spec = _spec(name_or_spec)
    path = os.fspath(path)
    return _export(spec, {(exporter, bool(keep_bn)): path}, opset)[(exporter, bool(keep_bn))]


def export_all(out_dir: str | os.PathLike, exporters: Iterable[str] = EXPORTERS,
               keep_bn: Iterable[bool] = (True, False), names: Iterable[str] | None = None,
               opset: int | None = None) -> dict[tuple[str, str, bool], str]:
    """Export every zoo model (or ``names``) in every variant; returns ``{(name, exporter, keep_bn): path}``."""
    exporters, keep_bn = tuple(exporters), tuple(keep_bn)
    result: dict[tuple[str, str, bool], str] = {}
    for name in names if names is not None else ZOO:
        for (exporter, kb), path in export_variants(name, out_dir, exporters, keep_bn, opset).items():
            result[(name, exporter, kb)] = path
    return result
