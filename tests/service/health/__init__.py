"""Tests of health and metrics."""
