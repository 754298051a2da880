"""A finished job's result files, downloaded one at a time (audited)."""
