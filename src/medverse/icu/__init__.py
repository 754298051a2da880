"""ICU vital-sign streams and deterioration scores."""
