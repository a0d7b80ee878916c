"""batchline: a fan-out / fan-in batch pipeline on GCP that never loses a row silently."""

__version__ = "0.1.0"
