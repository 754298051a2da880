"""Liveness, database reachability and Prometheus metrics."""
