"""ONNX in (`onnx_import`) and out (`onnx_export`: dumps, and the float graph for onnxruntime)."""
