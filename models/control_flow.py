"""Networks inside control flow: the If/Loop/Scan models the subgraph tests prune.

- ``SampleRateSwitch``: a 1-D conv stem, then one of two conv stacks of different structure (kernel 5, 16 wide /
  dilated kernel 3 then 1x1, 12 wide), chosen at run time by a flag input and both reading the stem's output from
  the outer scope, then a shared 1x1 head. ``export_switch`` writes it as an ``If`` with the dynamo exporter
  (``torch.cond``) or with the TorchScript exporter (``torch.jit.script``: a Python ``if`` on a tensor).
  Batch and time are dynamic in both.
- ``if_with_reshape_model``: an If built with ``onnx.parser`` whose branches differ in structure and hold their own
  weights (a body initializer in one, a Constant node in the other) and a Reshape whose target (inside the
  branch) spells the channel count, so pruning must rewrite sizes inside a body.
- ``recurrent_loop_model`` / ``recurrent_scan_model``: one tanh RNN cell h' = tanh(x_t Wx + h Wh + b) run over a
  dynamic number of time steps by ``Loop`` (trip count from the input's shape, x_t gathered from the outer scope)
  or by ``Scan`` (time as the scan axis), with the final state and the mean of every step's state feeding a
  classifier. Built with ``onnx.parser``: torch's exporters write no Scan, and a scripted Python loop exports
  shapeless loop-carried state.

Weights are random (seeded); nothing here is trained, so tests compare pruned models with their mask oracle, not
accuracies.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnx.parser
import torch
from torch import nn

from . import ExportError, _check, _quiet

SWITCH_INPUTS = ("wave", "flag")
SWITCH_DYNAMIC = {"wave": {0: "batch", 2: "time"}, "logits": {0: "batch", 2: "time"}}


class SampleRateSwitch(nn.Module):
    """stem -> (wide stack if flag.sum() > 0 else narrow stack) -> head, on a waveform [N, 1, T]; the flag is [1]."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.stem = nn.Conv1d(1, 8, 5, padding=2)
        self.high = nn.Sequential(nn.Conv1d(8, 16, 5, padding=2), nn.ReLU(), nn.Conv1d(16, 8, 5, padding=2))
        self.low = nn.Sequential(nn.Conv1d(8, 12, 3, padding=2, dilation=2), nn.ReLU(), nn.Conv1d(12, 8, 1))
        self.head = nn.Conv1d(8, classes, 1)

    def select(self, h: torch.Tensor, flag: torch.Tensor) -> torch.Tensor:
        """The branch: torch.cond (what the dynamo exporter writes as an If)."""
        return torch.cond(flag.sum() > 0, self.high, self.low, (h,))

    def forward(self, wave: torch.Tensor, flag: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(wave))
        return self.head(torch.relu(self.select(h, flag)))


class ScriptedSampleRateSwitch(SampleRateSwitch):
    """The same network with a Python ``if`` on a tensor, which ``torch.jit.script`` keeps as control flow."""

    def select(self, h: torch.Tensor, flag: torch.Tensor) -> torch.Tensor:
        if bool(flag.sum() > 0):
            return self.high(h)
        return self.low(h)


def switch_inputs(batch: int = 2, time: int = 64, flag: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(wave [batch, 1, time], flag [1]): the then branch runs for flag > 0."""
    g = torch.Generator().manual_seed(batch * 1000 + time)
    return torch.randn(batch, 1, time, generator=g), torch.tensor([flag])


def build_switch(scripted: bool = False) -> nn.Module:
    """The switch network in eval mode, built after ``torch.manual_seed(0)``."""
    torch.manual_seed(0)
    return (ScriptedSampleRateSwitch if scripted else SampleRateSwitch)().eval()


def export_switch(path: str | os.PathLike, exporter: str = "dynamo") -> str:
    """Export the switch network as an If model to ``path`` ('dynamo': torch.cond; 'torchscript': scripted ``if``),
    batch and time dynamic; checked with ``onnx.checker.check_model(full_check=True)``. Raises ExportError."""
    path = os.fspath(path)
    args = switch_inputs()
    try:
        with _quiet():
            if exporter == "dynamo":
                batch, time = torch.export.Dim("batch"), torch.export.Dim("time", min=8, max=4096)
                program = torch.onnx.export(build_switch(), args, dynamo=True, verbose=False, report=False,
                                            input_names=list(SWITCH_INPUTS), output_names=["logits"],
                                            dynamic_shapes=({0: batch, 2: time}, None))
                program.save(path, external_data=False)
            elif exporter == "torchscript":
                torch.onnx.export(torch.jit.script(build_switch(scripted=True)), args, path, dynamo=False,
                                  input_names=list(SWITCH_INPUTS), output_names=["logits"],
                                  dynamic_axes=SWITCH_DYNAMIC, opset_version=17)
            else:
                raise ValueError(f"exporter must be 'dynamo' or 'torchscript', got {exporter!r}")
    except ValueError:
        raise
    except Exception as e:
        raise ExportError(f"{exporter} export of the sample-rate switch failed: {e}") from e
    _check(path, f"sample-rate switch ({exporter})")
    return path


# ------------------------------------------------------------------------------------------------ onnx.parser
_IF_WITH_RESHAPE = """
<ir_version: 8, opset_import: ["" : 17]>
switch (float[N,3,4,4] x, bool fast) => (float[N,5] y) <float[8,3,3,3] w_stem, float[8] b_stem, float[5,128] w_fc,
                                                        float[5] b_fc> {
  s = Conv <pads = [1, 1, 1, 1]> (x, w_stem, b_stem)
  h = Relu (s)
  f = If (fast) <
    then_branch = fast_g () => (float[N,128] t_out) <float[8,8,1,1] w_fast, int64[2] t_shape = {-1, 128}> {
      t_conv = Conv (h, w_fast)
      t_act = Relu (t_conv)
      t_out = Reshape (t_act, t_shape)
    },
    else_branch = slow_g () => (float[N,128] e_out) {
      w_wide = Constant <value = float[6,8,3,3] {WIDE}> ()
      w_back = Constant <value = float[8,6,1,1] {BACK}> ()
      e_shape = Constant <value = int64[2] {-1, 128}> ()
      e_conv = Conv <pads = [1, 1, 1, 1]> (h, w_wide)
      e_act = Relu (e_conv)
      e_back = Conv (e_act, w_back)
      e_out = Reshape (e_back, e_shape)
    }>
  y = Gemm <transB = 1> (f, w_fc, b_fc)
}"""


def _floats(rng: np.random.Generator, n: int) -> str:
    return ", ".join(f"{v:.6f}" for v in rng.standard_normal(n) * 0.5)


def _with_initializers(text: str, seed: int) -> onnx.ModelProto:
    """Parse ``text``; outer value_info entries that no node makes become random float initializers."""
    model = onnx.parser.parse_model(text)
    rng = np.random.default_rng(seed)
    produced = {o for n in model.graph.node for o in n.output}
    for info in list(model.graph.value_info):
        if info.name not in produced:
            shape = [d.dim_value for d in info.type.tensor_type.shape.dim]
            model.graph.initializer.append(onnx.numpy_helper.from_array(
                (rng.standard_normal(shape) * 0.5).astype(np.float32), info.name))
            model.graph.value_info.remove(info)
    return model


def if_with_reshape_model(seed: int = 0) -> onnx.ModelProto:
    """The If of structurally different branches described in the module docstring (x [N,3,4,4], fast: bool)."""
    rng = np.random.default_rng(seed + 1)
    text = _IF_WITH_RESHAPE.replace("{WIDE}", "{" + _floats(rng, 6 * 8 * 9) + "}")
    text = text.replace("{BACK}", "{" + _floats(rng, 8 * 6) + "}")
    model = _with_initializers(text, seed)
    body = next(a.g for a in model.graph.node[2].attribute if a.name == "then_branch")
    body.initializer.append(onnx.numpy_helper.from_array(
        (rng.standard_normal((8, 8, 1, 1)) * 0.5).astype(np.float32), "w_fast"))
    body.value_info.remove(next(v for v in body.value_info if v.name == "w_fast"))
    return model


_RECURRENT = """
<ir_version: 8, opset_import: ["" : 17]>
rnn (float[N,T,6] x) => (float[N,3] y) <float[6,10] wx, float[10,10] wh, float[10] b, float[3,10] w_fc,
                                          float[3] b_fc, int64[1] zero, int64[1] one, int64[1] t_axis> {
  shape = Shape (x)
  n = Slice (shape, zero, one)
  ten = Constant <value = int64[1] {10}> ()
  h0_shape = Concat <axis = 0> (n, ten)
  h0 = ConstantOfShape (h0_shape)
  LOOP
  mean = ReduceMean <keepdims = 0, axes = [STEP_AXIS]> (steps)
  both = Add (h_final, mean)
  y = Gemm <transB = 1> (both, w_fc, b_fc)
}"""

# The tanh RNN cell both bodies run: h_new = tanh(x_t wx + h wh + b), also emitted as the step's scan output.
_CELL = """
      xw = MatMul (x_t, wx)
      hw = MatMul (h, wh)
      pre = Add (xw, hw)
      pre_b = Add (pre, b)
      h_new = Tanh (pre_b)
      h_step = Identity (h_new)
  }>"""

_LOOP = """
  trip_1d = Slice (shape, one, t_axis)
  trip = Squeeze (trip_1d)
  go = Constant <value = bool {1}> ()
  h_final, steps = Loop (trip, go, h0) <body = cell (int64 i, bool c, float[N,10] h) => (bool c_out, float[N,10] h_new,
                                                                                        float[N,10] h_step) {
      c_out = Identity (c)
      x_t = Gather <axis = 1> (x, i)""" + _CELL

_SCAN = """
  h_final, steps = Scan (h0, x) <num_scan_inputs = 1, scan_input_axes = [1], scan_output_axes = [1],
                                 body = cell (float[N,10] h, float[N,6] x_t) =>
                                             (float[N,10] h_new, float[N,10] h_step) {""" + _CELL


def _recurrent(body: str, step_axis: int, seed: int) -> onnx.ModelProto:
    model = _with_initializers(_RECURRENT.replace("LOOP", body).replace("STEP_AXIS", str(step_axis)), seed)
    ints = {"zero": [0], "one": [1], "t_axis": [2]}
    for k, init in enumerate(model.graph.initializer):
        if init.name in ints:
            model.graph.initializer[k].CopyFrom(onnx.numpy_helper.from_array(np.array(ints[init.name], np.int64),
                                                                           init.name))
    return model


def recurrent_loop_model(seed: int = 0) -> onnx.ModelProto:
    """The tanh RNN over x [N, T, 6] as a Loop: trip count T, state h [N, 10], scan output [T, N, 10]."""
    return _recurrent(_LOOP, 0, seed)


def recurrent_scan_model(seed: int = 0) -> onnx.ModelProto:
    """The tanh RNN over x [N, T, 6] as a Scan over axis 1: state h [N, 10], scan output [N, T, 10]."""
    return _recurrent(_SCAN, 1, seed)


# ------------------------------------------------------------------------------------ scripted loops over time
class ScriptedTanhRNN(nn.Module):
    """h_t = tanh(inp(x_t) + rec(h_(t-1))) over x [N, T, 6] by a Python ``for`` over time, then a classifier of
    the final state (``stacked``: of the final state plus the mean of every step's state, collected in a list and
    ``torch.stack``-ed, which the TorchScript exporter writes as SequenceInsert / ConcatFromSequence)."""

    def __init__(self, hidden: int = 10, stacked: bool = False):
        super().__init__()
        self.hidden, self.stacked = hidden, stacked
        self.inp, self.rec, self.fc = nn.Linear(6, hidden), nn.Linear(hidden, hidden, bias=False), nn.Linear(hidden, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(x.shape[0], self.hidden)
        steps: list[torch.Tensor] = []
        for t in range(x.shape[1]):
            h = torch.tanh(self.inp(x[:, t]) + self.rec(h))
            if self.stacked:
                steps.append(h)
        if self.stacked:
            h = h + torch.stack(steps, 1).mean(1)
        return self.fc(h)


def export_scripted_rnn(path: str | os.PathLike, stacked: bool = False) -> str:
    """Export ``ScriptedTanhRNN`` (seeded) through ``torch.jit.script`` and the TorchScript exporter (opset 17) as a
    Loop over time, batch and time dynamic; checked with ``onnx.checker``. Raises ExportError."""
    path = os.fspath(path)
    torch.manual_seed(0)
    module = torch.jit.script(ScriptedTanhRNN(stacked=stacked).eval())
    try:
        with _quiet():
            torch.onnx.export(module, (torch.randn(2, 5, 6),), path, dynamo=False, input_names=["x"],
                              output_names=["y"], dynamic_axes={"x": {0: "batch", 1: "time"}, "y": {0: "batch"}},
                              opset_version=17)
    except Exception as e:
        raise ExportError(f"TorchScript export of the scripted RNN failed: {e}") from e
    _check(path, "scripted RNN (torchscript)")
    return path
