"""The explicit training loop, data loading and metrics."""
