"""Network factory, losses, checkpoint format, ONNX export and MONAI bundles."""
