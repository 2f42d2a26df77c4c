"""Shipping a face model: ONNX export and its calibration data, INT8 quantisation, embedding, importing published weights (ARCHITECTURE §2)."""
