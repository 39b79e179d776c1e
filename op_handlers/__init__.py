"""Op handlers, one module per op family; importing this package registers them all by ONNX op_type."""

from onnxprune.op_handlers import (  # noqa: F401
    concat_split,
    conv,
    einsum,
    elementwise,
    indexing,
    integer,
    linear,
    normalization,
    pooling,
    quantize,
    quantized_recurrent,
    recurrent,
    reshape,
    resize_pad,
    scatter,
    sequence,
    shape_ops,
    softmax,
)
