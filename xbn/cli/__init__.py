"""Console scripts: one small module each, argument parsing only."""
