"""batchline: a fan-out / fan-in batch pipeline on GCP that never loses a row silently.

F1-F10 in docstrings and comments name the failures of the pipeline this one replaces; each is
described, with the guard and the tests that prove it, in docs/failures.md.
"""

__version__ = "0.1.0"
