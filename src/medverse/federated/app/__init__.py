"""The medverse Flower App: ClientApp and ServerApp over the heart task (``flwr run`` target)."""
