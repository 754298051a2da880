"""torch.distributed helpers (DDP set-up, partitioning)."""
