"""MONAI model-zoo bundles: their files, their plan, and running them."""
