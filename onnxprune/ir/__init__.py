"""Loading, shapes, shape values, export and saving of ONNX models: everything that touches the file format."""
