"""Data shipped with the package: bundled prior checkpoints with model cards and a small sample study."""
