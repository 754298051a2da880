"""Soft-tissue simulation on organ meshes."""
