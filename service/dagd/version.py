"""dagd's version, in one place (the package, the API and the log all say it)."""

__version__ = "0.1.0"
