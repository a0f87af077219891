"""Inference backends (ONNX Runtime, PyTorch, TensorRT) behind one interface."""
