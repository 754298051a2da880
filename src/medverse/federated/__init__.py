"""Federated learning across sites (Flower)."""
