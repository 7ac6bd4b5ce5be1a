"""The package version, kept free of imports so setuptools can read it statically."""

__version__ = "0.1.0"
