"""Reconstruction: after pruning, refit the layers that read pruned channels so their outputs match the original
model's on calibration data (ridge least squares on chunked Gram matrices, bias compensation), layer by layer."""

from onnxprune.reconstruct.consumers import Consumer, find_consumers
from onnxprune.reconstruct.sequential import LayerFit, Reconstruction, ReconstructOptions, reconstruct

__all__ = ["Consumer", "LayerFit", "ReconstructOptions", "Reconstruction", "find_consumers",
           "reconstruct"]
