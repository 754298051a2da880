"""The Predictor: a Volume in, labels and a measured report out."""
