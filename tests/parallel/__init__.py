"""Tests of medverse.parallel."""
