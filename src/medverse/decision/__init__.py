"""Mixture-of-experts clinical decision support."""
