"""Releases, ONNX export and the .c12 container."""
