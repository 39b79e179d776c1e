"""Calibration data: the model inputs users give, read and batched."""
