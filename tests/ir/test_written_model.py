"""The written model keeps what it did not prune: metadata_props (labels a pipeline reads), model_version,
doc_string, domain, producer, opset imports, node names and node metadata; output files get the user's file mode."""

from __future__ import annotations

import os

import onnx

import onnxprune as op
from tests.support import bad_inputs


def test_metadata_and_model_fields_survive_pruning(tmp_path):
    source = bad_inputs._model_file(tmp_path)
    model = onnx.load(source)
    onnx.helper.set_model_props(model, {"labels": "cat,dog,bird", "task": "classification"})
    model.graph.node[0].metadata_props.add(key="pkg.torch.onnx.name_scopes", value="['', 'conv1']")
    model.model_version, model.doc_string, model.domain = 7, "a classifier", "com.example"
    model.producer_name, model.producer_version = "keras2onnx", "1.2"
    onnx.save(model, source)
    pruned = op.prune(source, ratio=0.5)
    out = tmp_path / "out.onnx"
    pruned.save(out)
    written = onnx.load(out)
    assert {e.key: e.value for e in written.metadata_props} == {"labels": "cat,dog,bird", "task": "classification"}
    assert (written.model_version, written.doc_string, written.domain) == (7, "a classifier", "com.example")
    assert (written.producer_name, written.producer_version) == ("keras2onnx", "1.2")
    assert [(i.domain, i.version) for i in written.opset_import] == [(i.domain, i.version) for i in model.opset_import]
    assert {n.name for n in written.graph.node} == {n.name for n in model.graph.node}
    first = next(n for n in written.graph.node if n.name == model.graph.node[0].name)
    assert [(e.key, e.value) for e in first.metadata_props] == [("pkg.torch.onnx.name_scopes", "['', 'conv1']")]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
