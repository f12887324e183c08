"""Copy OCI artifacts between registries and OCI image layouts, mounting blobs where it can."""

__version__ = "0.1.0"
__all__ = ["__version__"]
