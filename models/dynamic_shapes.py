"""Small models whose inputs or shapes broke onnxprune on real exports (issue 8, parts 1 and 2).

Each builder returns a checked ``onnx.ModelProto`` with seeded weights, small enough to load, prune and run in
milliseconds:

- ``detector``: ``[batch, 3, height, width]`` with an upsampling (Resize) + Concat neck of total stride 4; it fails
  in the Concat at 2x2 (and at any size not a multiple of 4).
- ``sentence_encoder``: ``input_ids``, ``token_type_ids`` (a 2-row table) and ``attention_mask``, all
  ``[batch, seq]``, with masked mean pooling; type ids drawn up to 16 index past the table.
- ``nhwc_face_detector``: ``[N, M1, M2, 3]`` (channels last, as converters from TensorFlow write it); its first
  Conv (kernel 3, no padding) fails at 2x2.
- ``baked_transformer``: exported by the TorchScript exporter with dynamic batch *and* sequence, but its attention
  reshapes read the sequence length through ``int()``, so the exporter baked ``SEQ`` into the Reshape targets; it
  only runs at sequence length ``SEQ`` (the export's own hint), at any batch.
- ``contrib_transpose``: a com.microsoft op (BiasGelu) that ONNX shape inference cannot type, followed by a
  Transpose and Convs (as in PaddlePaddle text recognizers, where a Transpose was left untyped);
  onnxruntime's symbolic shape inference types it.
- ``text_recognizer``: a Squeeze whose axes are computed from ``Size(Shape(x))`` then a Transpose (as PaddlePaddle
  text recognizers are exported); ONNX inference leaves both untyped, symbolic inference types them.
- ``fused_conv``: a com.microsoft FusedConv neither inference types; only a run at concrete input shapes does.
- ``rate_switch``: an ``If`` on a sample-rate flag whose branches give different lengths (1x or 2x upsampled), as in
  audio models with a sample-rate switch; only a run at concrete shapes tells the sizes downstream.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
SEQ = 12  # the sequence length baked into baked_transformer's Reshape targets
_F = TensorProto.FLOAT


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _weight(rng: np.random.Generator, name: str, *shape: int) -> onnx.TensorProto:
    fan_in = int(np.prod(shape[1:])) or 1
    return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32), name)


def _ints(name: str, values) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, np.int64), name)


def _model(nodes, inputs, outputs, inits, domains: tuple[str, ...] = ()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "dynamic_shapes", inputs, outputs, inits)
    opsets = [helper.make_opsetid("", OPSET)] + [helper.make_opsetid(d, 1) for d in domains]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=8, producer_name="onnxprune.models")
    onnx.checker.check_model(model, full_check=True)
    return model


def _conv(nodes, inits, rng, x: str, name: str, cin: int, cout: int, k: int = 3, stride: int = 1, pad: int = 1,
          relu: bool = True) -> str:
    inits += [_weight(rng, f"{name}.weight", cout, cin, k, k), _weight(rng, f"{name}.bias", cout)]
    out = f"{name}_out"
    nodes.append(helper.make_node("Conv", [x, f"{name}.weight", f"{name}.bias"], [out], name=name,
                                  kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4))
    if not relu:
        return out
    nodes.append(helper.make_node("Relu", [out], [f"{name}_act"], name=f"{name}_relu"))
    return f"{name}_act"


def detector(seed: int = 0) -> onnx.ModelProto:
    """``[batch, 3, height, width]`` -> two stride-2 Convs -> Resize x2 -> Concat with the stride-2 map -> head."""
    rng, nodes, inits = _rng(seed), [], []
    c1 = _conv(nodes, inits, rng, "images", "stem", 3, 8, stride=2)
    c2 = _conv(nodes, inits, rng, c1, "down", 8, 16, stride=2)
    inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "up.scales"))
    nodes += [helper.make_node("Resize", [c2, "", "up.scales"], ["up_out"], name="up", mode="nearest"),
              helper.make_node("Concat", ["up_out", c1], ["neck_in"], name="neck_concat", axis=1)]
    neck = _conv(nodes, inits, rng, "neck_in", "neck", 24, 16, k=1, pad=0)
    _conv(nodes, inits, rng, neck, "head", 16, 6, k=1, pad=0, relu=False)
    nodes.append(helper.make_node("Identity", ["head_out"], ["boxes"], name="boxes_identity"))
    return _model(nodes, [helper.make_tensor_value_info("images", _F, ["batch", 3, "height", "width"])],
                  [helper.make_tensor_value_info("boxes", _F, ["batch", 6, "h4", "w4"])], inits)


def sentence_encoder(seed: int = 0, vocab: int = 50, hidden: int = 16) -> onnx.ModelProto:
    """Token, type (2 rows) and position embeddings -> MLP -> mean over the positions the mask keeps."""
    rng = _rng(seed)
    inits = [_weight(rng, "word_embeddings", vocab, hidden), _weight(rng, "token_type_embeddings", 2, hidden),
             _weight(rng, "position_embeddings", 64, hidden), _weight(rng, "fc1.weight", hidden, 2 * hidden),
             _weight(rng, "fc1.bias", 2 * hidden), _weight(rng, "fc2.weight", 2 * hidden, hidden),
             _weight(rng, "fc2.bias", hidden), _ints("one", [1]), _ints("two", [2]), _ints("axis1", [1]),
             _ints("zero", 0), _ints("step", 1), numpy_helper.from_array(np.array(1e-6, np.float32), "eps")]
    nodes = [
        helper.make_node("Gather", ["word_embeddings", "input_ids"], ["words"]),
        helper.make_node("Gather", ["token_type_embeddings", "token_type_ids"], ["types"]),
        helper.make_node("Shape", ["input_ids"], ["ids_shape"], start=1, end=2),
        helper.make_node("Squeeze", ["ids_shape"], ["seq_len"]),
        helper.make_node("Range", ["zero", "seq_len", "step"], ["positions"]),
        helper.make_node("Gather", ["position_embeddings", "positions"], ["places"]),
        helper.make_node("Add", ["words", "types"], ["wt"]),
        helper.make_node("Add", ["wt", "places"], ["embedded"]),
        helper.make_node("MatMul", ["embedded", "fc1.weight"], ["h1"]),
        helper.make_node("Add", ["h1", "fc1.bias"], ["h1b"]),
        helper.make_node("Relu", ["h1b"], ["h1r"]),
        helper.make_node("MatMul", ["h1r", "fc2.weight"], ["h2"]),
        helper.make_node("Add", ["h2", "fc2.bias"], ["hidden"]),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=_F),
        helper.make_node("Unsqueeze", ["mask_f", "two"], ["mask3"]),
        helper.make_node("Mul", ["hidden", "mask3"], ["kept"]),
        helper.make_node("ReduceSum", ["kept", "axis1"], ["total"], keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "axis1"], ["count"], keepdims=0),
        helper.make_node("Add", ["count", "eps"], ["count_eps"]),
        helper.make_node("Div", ["total", "count_eps"], ["sentence_embedding"]),
    ]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
              for n in ("input_ids", "token_type_ids", "attention_mask")]
    return _model(nodes, inputs, [helper.make_tensor_value_info("sentence_embedding", _F, ["batch", hidden])], inits)


def nhwc_face_detector(seed: int = 0) -> onnx.ModelProto:
    """``[N, M1, M2, 3]`` -> Transpose to NCHW -> Convs (the first: kernel 3, no padding) -> Transpose back."""
    rng, nodes, inits = _rng(seed), [], []
    nodes.append(helper.make_node("Transpose", ["input"], ["nchw"], name="to_nchw", perm=[0, 3, 1, 2]))
    c1 = _conv(nodes, inits, rng, "nchw", "conv1", 3, 8, stride=2, pad=0)
    c2 = _conv(nodes, inits, rng, c1, "conv2", 8, 16, stride=2)
    _conv(nodes, inits, rng, c2, "scores", 16, 4, k=1, pad=0, relu=False)
    nodes.append(helper.make_node("Transpose", ["scores_out"], ["output"], name="to_nhwc", perm=[0, 2, 3, 1]))
    return _model(nodes, [helper.make_tensor_value_info("input", _F, ["N", "M1", "M2", 3])],
                  [helper.make_tensor_value_info("output", _F, ["N", "A", "B", 4])], inits)


def baked_transformer(seed: int = 0) -> onnx.ModelProto:
    """A one-layer attention classifier exported by TorchScript with dynamic ``batch`` and ``sequence`` axes whose
    Reshape targets hold ``SEQ`` (the module read the length through ``int()``, which tracing freezes)."""
    import io
    import warnings

    import torch
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, vocab: int = 40, hidden: int = 32, heads: int = 4, classes: int = 5):
            super().__init__()
            self.heads, self.head_dim = heads, hidden // heads
            self.embed = nn.Embedding(vocab, hidden)
            self.qkv = nn.Linear(hidden, 3 * hidden)
            self.proj = nn.Linear(hidden, hidden)
            self.fc = nn.Linear(hidden, 2 * hidden)
            self.out = nn.Linear(2 * hidden, hidden)
            self.classifier = nn.Linear(hidden, classes)

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            x = self.embed(input_ids)
            batch, seq = x.shape[0], int(x.shape[1])  # int(): the trace bakes the sequence length
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            q, k, v = (t.reshape(batch, seq, self.heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
            attn = torch.softmax(q @ k.transpose(-1, -2) / self.head_dim ** 0.5, dim=-1)
            ctx = (attn @ v).transpose(1, 2).reshape(batch, seq, self.heads * self.head_dim)
            x = x + self.proj(ctx)
            x = x + self.out(torch.relu(self.fc(x)))
            return self.classifier(x.mean(dim=1))

    torch.manual_seed(seed)
    module = Attention().eval()
    ids = torch.randint(0, 40, (2, SEQ), generator=torch.Generator().manual_seed(seed))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (ids,), buffer, dynamo=False, input_names=["input_ids"], output_names=["logits"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch"}},
                          opset_version=OPSET)
    model = onnx.load_model_from_string(buffer.getvalue())
    onnx.checker.check_model(model, full_check=True)
    return model


def contrib_transpose(seed: int = 0) -> onnx.ModelProto:
    """Conv -> com.microsoft BiasGelu (untyped by ONNX inference) -> Transpose -> Transpose back -> Convs."""
    rng, nodes, inits = _rng(seed), [], []
    c1 = _conv(nodes, inits, rng, "image", "conv1", 3, 8, relu=False)
    inits.append(_weight(rng, "gelu.bias", 8))
    nodes += [helper.make_node("Transpose", [c1], ["nhwc"], name="to_nhwc", perm=[0, 2, 3, 1]),
              helper.make_node("BiasGelu", ["nhwc", "gelu.bias"], ["gelu"], name="gelu", domain="com.microsoft"),
              helper.make_node("Transpose", ["gelu"], ["nchw"], name="to_nchw", perm=[0, 3, 1, 2])]
    c2 = _conv(nodes, inits, rng, "nchw", "conv2", 8, 16)
    _conv(nodes, inits, rng, c2, "conv3", 16, 4, k=1, pad=0, relu=False)
    nodes.append(helper.make_node("Identity", ["conv3_out"], ["features"], name="features_identity"))
    return _model(nodes, [helper.make_tensor_value_info("image", _F, ["batch", 3, "height", "width"])],
                  [helper.make_tensor_value_info("features", _F, ["batch", 4, "height", "width"])], inits,
                  domains=("com.microsoft",))


def text_recognizer(seed: int = 0) -> onnx.ModelProto:
    """``[batch, 3, 8, width]`` -> Convs down to height 1 -> Squeeze (axes computed from ``Size(Shape(x)) - 2``, as
    PaddlePaddle's exporter writes a squeeze) -> Transpose to ``[batch, width, 16]`` -> MatMul classifier."""
    rng, nodes, inits = _rng(seed), [], []
    c1 = _conv(nodes, inits, rng, "image", "conv1", 3, 8)
    inits += [_weight(rng, "conv2.weight", 16, 8, 8, 1), _weight(rng, "conv2.bias", 16), _ints("two", 2),
              _ints("zero", [0]), _weight(rng, "classifier.weight", 16, 10), _weight(rng, "classifier.bias", 10)]
    nodes += [helper.make_node("Conv", [c1, "conv2.weight", "conv2.bias"], ["column"], name="conv2",
                               kernel_shape=[8, 1]),
              helper.make_node("Relu", ["column"], ["column_act"], name="conv2_relu"),
              helper.make_node("Shape", ["column_act"], ["shape"], name="shape"),
              helper.make_node("Size", ["shape"], ["rank"], name="rank"),
              helper.make_node("Sub", ["rank", "two"], ["height_axis"], name="height_axis"),
              helper.make_node("Unsqueeze", ["height_axis", "zero"], ["axes"], name="axes"),
              helper.make_node("Squeeze", ["column_act", "axes"], ["sequence"], name="squeeze_height"),
              helper.make_node("Transpose", ["sequence"], ["steps"], name="to_steps", perm=[0, 2, 1]),
              helper.make_node("MatMul", ["steps", "classifier.weight"], ["scores"], name="classifier"),
              helper.make_node("Add", ["scores", "classifier.bias"], ["logits"], name="classifier_bias")]
    return _model(nodes, [helper.make_tensor_value_info("image", _F, ["batch", 3, 8, "width"])],
                  [helper.make_tensor_value_info("logits", _F, ["batch", "steps", 10])], inits)


def fused_conv(seed: int = 0, shape: tuple = ("batch", 3, 16, 16)) -> onnx.ModelProto:
    """``image [batch, 3, 16, 16]`` -> com.microsoft FusedConv (Conv + Relu; neither ONNX's nor onnxruntime's
    symbolic shape inference types it, onnxruntime runs it) -> Conv -> Conv. Typed only by observing one run,
    which needs concrete input shapes (``shape``, or ``--input-shape image:1x3x16x16``)."""
    rng, nodes, inits = _rng(seed), [], []
    inits += [_weight(rng, "fused.weight", 8, 3, 3, 3), _weight(rng, "fused.bias", 8)]
    nodes.append(helper.make_node("FusedConv", ["image", "fused.weight", "fused.bias"], ["fused_out"], name="fused",
                                  domain="com.microsoft", kernel_shape=[3, 3], pads=[1, 1, 1, 1], activation="Relu"))
    c2 = _conv(nodes, inits, rng, "fused_out", "conv2", 8, 16)
    _conv(nodes, inits, rng, c2, "conv3", 16, 4, k=1, pad=0, relu=False)
    nodes.append(helper.make_node("Identity", ["conv3_out"], ["features"], name="features_identity"))
    graph = helper.make_graph(nodes, "dynamic_shapes", [helper.make_tensor_value_info("image", _F, list(shape))],
                              [helper.make_tensor_value_info("features", _F, [shape[0], 4, 16, 16])], inits)
    # onnx.checker's full check runs ONNX's shape inference, which does not know FusedConv: checked without it
    model = helper.make_model(graph, ir_version=8, producer_name="onnxprune.models",
                              opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)])
    onnx.checker.check_model(model)
    return model


def rate_switch(seed: int = 0) -> onnx.ModelProto:
    """``audio [batch, 1, length]`` -> Conv1d -> If(high_rate): identity, else Resize x2 -> Conv1d -> Conv1d."""
    rng, nodes, inits = _rng(seed), [], []
    inits += [_weight(rng, "conv1.weight", 8, 1, 3), _weight(rng, "conv1.bias", 8),
              _weight(rng, "conv2.weight", 16, 8, 3), _weight(rng, "conv2.bias", 16),
              _weight(rng, "conv3.weight", 4, 16, 1), _weight(rng, "conv3.bias", 4)]
    nodes.append(helper.make_node("Conv", ["audio", "conv1.weight", "conv1.bias"], ["c1"], name="conv1",
                                  kernel_shape=[3], pads=[1, 1]))
    nodes.append(helper.make_node("Relu", ["c1"], ["r1"], name="relu1"))
    same = helper.make_graph([helper.make_node("Identity", ["r1"], ["same"], name="keep_rate")], "same_rate", [],
                             [helper.make_tensor_value_info("same", _F, ["batch", 8, "length"])])
    scales = numpy_helper.from_array(np.array([1, 1, 2], np.float32), "up_scales")
    doubled = helper.make_graph([helper.make_node("Constant", [], ["up_scales"], name="up_scales", value=scales),
                                 helper.make_node("Resize", ["r1", "", "up_scales"], ["doubled"], name="upsample",
                                                  mode="nearest")],
                                "double_rate", [],
                                [helper.make_tensor_value_info("doubled", _F, ["batch", 8, "doubled"])])
    nodes.append(helper.make_node("If", ["high_rate"], ["resampled"], name="rate_switch", then_branch=same,
                                  else_branch=doubled))
    nodes += [helper.make_node("Conv", ["resampled", "conv2.weight", "conv2.bias"], ["c2"], name="conv2",
                               kernel_shape=[3], pads=[1, 1]),
              helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
              helper.make_node("Conv", ["r2", "conv3.weight", "conv3.bias"], ["features"], name="conv3",
                               kernel_shape=[1])]
    inputs = [helper.make_tensor_value_info("audio", _F, ["batch", 1, "length"]),
              helper.make_tensor_value_info("high_rate", TensorProto.BOOL, [])]
    return _model(nodes, inputs, [helper.make_tensor_value_info("features", _F, ["batch", 4, "frames"])], inits)


CASES = {"detector": detector, "sentence_encoder": sentence_encoder, "nhwc_face_detector": nhwc_face_detector,
         "baked_transformer": baked_transformer,
         "contrib_transpose": contrib_transpose, "text_recognizer": text_recognizer, "fused_conv": fused_conv,
         "rate_switch": rate_switch}
