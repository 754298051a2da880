"""Tests of the studies resource: upload, validation, ingest, listing, deletion."""
