"""Aster Studio: watch and steer remote AI agents live."""

__version__ = "0.1.0"
