"""Tests of the jobs resource: the queue, workers, crash recovery."""
