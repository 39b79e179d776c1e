"""com.microsoft::GatherBlockQuantized (a blockwise-quantized embedding table): the hidden axis prunes in whole
quantization blocks, together with the MatMulNBits that reads it; table rows are never pruned; scales and zero
points (packed for 4-bit uint8) follow the kept blocks. Mask-exact: the pruned model equals the mask oracle."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnxprune.op_handlers.matmul_nbits import pack_bits, unpack_bits

import onnxprune as op
from onnxprune.axes import ChannelAxis
from onnxprune.runtime.inputs import integer_bounds
from tests.support.handlers_util import analyse, group_of, header, initializer, make_model, prune_and_compare, table

MS = '<ir_version: 10, opset_import: ["" : 21, "com.microsoft" : 1]>'
VOCAB, HIDDEN, BLOCK, OUT = 20, 64, 16, 8
BLOCKS = HIDDEN // BLOCK
RNG = np.random.default_rng(0)


def _table(dtype: str, bits: int, zero_points: bool) -> dict:
    """data, scales (and zero points) of a [VOCAB, HIDDEN] table quantized in blocks of BLOCK along the hidden axis,
    stored as GatherBlockQuantized wants them for ``dtype`` (uint8 packs 8 / bits values per byte)."""
    levels = 16 if dtype != "uint8" else 1 << bits
    values = RNG.integers(0, levels, size=(VOCAB, HIDDEN))
    zp = RNG.integers(levels // 4, 3 * levels // 4, size=(VOCAB, BLOCKS))
    consts = {"scales": RNG.uniform(0.01, 0.05, (VOCAB, BLOCKS)).astype(np.float32)}
    if dtype == "uint8":
        consts["table"] = pack_bits(values.astype(np.uint8), bits).reshape(VOCAB, -1)
        if zero_points:
            consts["zeros"] = pack_bits(zp.astype(np.uint8), bits).reshape(VOCAB, -1)
    else:
        shift = 8 if dtype == "int4" else 0
        np_type = onnx.helper.tensor_dtype_to_np_dtype(getattr(onnx.TensorProto, dtype.upper()))
        consts["table"] = (values - shift).astype(np_type)
        if zero_points:
            consts["zeros"] = (zp - shift).astype(np_type)
    return consts


def _model_text(dtype: str, bits: int, consts: dict) -> str:
    data_type = f"{dtype}[{VOCAB},{consts['table'].shape[1]}]"
    zero = f", {dtype}[{VOCAB},{consts['zeros'].shape[1]}] zeros" if "zeros" in consts else ""
    return MS + f"""
    agraph (int64[2,5] ids) => (float[2,5,{OUT}] y) <{data_type} table, float[{VOCAB},{BLOCKS}] scales{zero},
        uint8[{OUT},{BLOCKS},{BLOCK // 2}] weight, float[{OUT * BLOCKS}] wscales> {{
      e = com.microsoft.GatherBlockQuantized <bits={bits}, block_size={BLOCK}, gather_axis=0, quantize_axis=1>
          (table, ids, scales{", zeros" if "zeros" in consts else ""})
      r = Relu (e)
      y = com.microsoft.MatMulNBits <K={HIDDEN}, N={OUT}, bits=4, block_size={BLOCK}> (r, weight, wscales)
    }}"""


def _consts(dtype: str, bits: int, zero_points: bool) -> dict:
    consts = _table(dtype, bits, zero_points)
    consts.update(weight=RNG.integers(0, 256, size=(OUT, BLOCKS, BLOCK // 2)).astype(np.uint8),
                  wscales=RNG.uniform(0.01, 0.05, OUT * BLOCKS).astype(np.float32))
    return consts


def _analysed(dtype: str, bits: int, zero_points: bool) -> op.DependencyGraph:
    consts = _consts(dtype, bits, zero_points)
    return analyse(_model_text(dtype, bits, consts), **consts)


VARIANTS = [("uint8", 4, True), ("uint8", 4, False), ("uint8", 8, True), ("uint8", 8, False), ("uint8", 2, True),
            ("uint4", 4, True), ("int4", 4, False)]


@pytest.mark.parametrize("dtype,bits,zero_points", VARIANTS)
def test_hidden_axis_prunes_in_whole_blocks_and_matches_the_oracle(dtype, bits, zero_points):
    dg = _analysed(dtype, bits, zero_points)
    hidden = group_of(dg, "e", 2)
    assert hidden.prunable and hidden.exact and hidden.size == BLOCKS
    assert table(hidden, "e", 2)[1] == list(range(BLOCK, 2 * BLOCK)) and table(hidden, "weight", 1) == [[k] for k in
                                                                                                  range(BLOCKS)]
    assert any("looks up rows" in r for r in dg.record.blocks[ChannelAxis("table", 0)])  # vocab rows never go
    for units in ([1], [0, 3]):
        model, passed = prune_and_compare(dg, hidden.id, units)
        assert passed, f"{dtype} bits={bits} zero_points={zero_points} units {units}"
        kept = BLOCKS - len(units)
        assert initializer(model, "scales").shape == (VOCAB, kept)
        assert initializer(model, "table").shape[1] == (kept * BLOCK * bits // 8 if dtype == "uint8" else kept * BLOCK)


def test_packed_zero_points_and_scales_keep_their_blocks():
    consts = _consts("uint8", 4, True)
    original = {k: v.copy() for k, v in consts.items()}
    dg = analyse(_model_text("uint8", 4, consts), **consts)
    model, passed = prune_and_compare(dg, group_of(dg, "e", 2).id, [1, 2])
    assert passed
    zero_points = initializer(model, "zeros")
    assert zero_points.shape == (VOCAB, 1)  # two kept blocks of 4-bit zero points: one byte per row
    kept_zeros = unpack_bits(original["zeros"], VOCAB, BLOCKS, 4)[:, [0, 3]]
    assert np.array_equal(unpack_bits(zero_points, VOCAB, 2, 4), kept_zeros)
    assert np.array_equal(initializer(model, "scales"), original["scales"][:, [0, 3]])
    data = initializer(model, "table")  # bytes of blocks 0 and 3 (8 bytes per block of 16 4-bit values)
    assert np.array_equal(data, np.concatenate([original["table"][:, :8], original["table"][:, 24:]], axis=1))


def test_made_up_ids_stay_below_the_table_rows():
    consts = _consts("uint8", 4, False)
    assert integer_bounds(make_model(_model_text("uint8", 4, consts), **consts)) == {"ids": VOCAB}


def test_fp8_tables_are_refused_with_a_reason():
    dg = analyse(MS + f"""
    agraph (int64[2,5] ids) => (float[2,5,{HIDDEN}] e)
        <float8e4m3fn[{VOCAB},{HIDDEN}] data, float[{VOCAB},{BLOCKS}] s> {{
      e = com.microsoft.GatherBlockQuantized <block_size={BLOCK}, gather_axis=0, quantize_axis=1> (data, ids, s)
    }}""")
    reasons = dg.record.blocks[ChannelAxis("data", 1)]
    assert any("float8e4m3fn data" in r for r in reasons), reasons


@pytest.mark.parametrize("symmetric", [True, False])
def test_onnxruntime_quantizer_output_prunes_like_the_oracle(symmetric):
    """onnxruntime's MatMulNBitsQuantizer with Gather among the ops to quantize writes GatherBlockQuantized with
    int4 data (symmetric) or uint4 data and zero points; the embedding width and the hidden layer both prune."""
    quantization = pytest.importorskip("onnxruntime.quantization.matmul_nbits_quantizer")
    model = make_model(header(17) + """
    agraph (int64[2,5] ids) => (float[2,5,8] y) <float[50,64] table, float[64,32] w1, float[32,8] w2> {
      e = Gather (table, ids)
      h = MatMul (e, w1)
      r = Relu (h)
      y = MatMul (r, w2)
    }""")
    quantizer = quantization.MatMulNBitsQuantizer(
        model, block_size=BLOCK, is_symmetric=symmetric, op_types_to_quantize=("MatMul", "Gather"),
        algo_config=quantization.DefaultWeightOnlyQuantConfig(
            block_size=BLOCK, is_symmetric=symmetric, op_types_to_quantize=("MatMul", "Gather"),
            quant_axes=(("MatMul", 0), ("Gather", 1))))
    quantizer.process()
    quantized = quantizer.model.model
    node = next(n for n in quantized.graph.node if n.op_type == "GatherBlockQuantized")
    table_type = next(i.data_type for i in quantized.graph.initializer if i.name == node.input[0])
    assert table_type == (onnx.TensorProto.INT4 if symmetric else onnx.TensorProto.UINT4)
    assert len(node.input) == (3 if symmetric else 4)
    dg = op.analyse_model(quantized)
    embedding = group_of(dg, node.output[0], 2)
    assert embedding.exact and embedding.size == 64 // BLOCK and len(dg.prunable_groups()) == 2
    for group in dg.prunable_groups():
        _, passed = prune_and_compare(dg, group.id, [0])
        assert passed, group.details()


def test_int4_table_quantized_along_its_rows_prunes_single_columns():
    """quantize_axis = gather_axis (int4 allows it): scales run over blocks of rows, one per column, so columns
    go one by one, each with its column of scales."""
    table = RNG.integers(-8, 8, size=(32, 24)).astype(onnx.helper.tensor_dtype_to_np_dtype(onnx.TensorProto.INT4))
    dg = analyse(MS + """
    agraph (int64[2,5] ids) => (float[2,5,6] y) <int4[32,24] table, float[2,24] scales, float[24,6] w> {
      e = com.microsoft.GatherBlockQuantized <block_size=16, gather_axis=0, quantize_axis=0> (table, ids, scales)
      y = MatMul (e, w)
    }""", table=table, scales=RNG.uniform(0.01, 0.05, (2, 24)).astype(np.float32))
    columns = group_of(dg, "e", 2)
    assert columns.size == 24 and columns.exact
    model, passed = prune_and_compare(dg, columns.id, [1, 5, 7])
    assert passed and initializer(model, "scales").shape == (2, 21) and initializer(model, "table").shape == (32, 21)
