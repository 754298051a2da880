"""Dataset fingerprint, plan, MONAI transform chains and resampling."""
