"""imgclf's shared runtime: what every function imports for the concerns they share."""

__version__ = "0.1.0"
