"""Tests of onnxprune.search."""
