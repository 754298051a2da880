"""Decision support over HTTP: model cards and explained, calibrated predictions (audited)."""
