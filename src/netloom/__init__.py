"""netloom: a network virtualization overlay on MidoNet's design."""

__version__ = "0.1.0"
