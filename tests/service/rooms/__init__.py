"""Tests of the shared rooms."""
