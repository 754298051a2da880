"""The model catalog (checkpoints in the models folder) and its router."""
