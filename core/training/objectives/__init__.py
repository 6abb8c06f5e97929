"""The training objectives, one module each; every module here is found and registered by
core/training/registry.py. To add one, see docs/architecture.md ("Adding an objective")."""
