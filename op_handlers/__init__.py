"""Op handlers, one module per op family; importing this package registers them all by ONNX op_type."""

from op_handlers import (  # noqa: F401
    concat_split,
    conv,
    elementwise,
    linear,
    normalization,
    pooling,
    recurrent,
    reshape,
    resize_pad,
    sequence,
    shape_ops,
)
