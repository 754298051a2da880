"""The explicit training loop, data loading and metrics.

Public API: ``medverse.training.api.train(dataset_dir, out_dir, TrainConfig) -> TrainResult``
and ``medverse.training.evaluation.evaluate(checkpoint, data, out_dir, ...)``.
"""
