"""The audit log: every access to a study recorded, and the router that reads it."""
