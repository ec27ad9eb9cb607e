"""Companion package of the book "Losses, gradients and weight updates".

Importing ``companion`` imports no deep-learning framework: the framework-free modules
(``backprop``, ``optim``, ...) use NumPy only, and ``companion.torch`` and
``companion.keras`` load their framework when they are imported.
"""

__version__ = "0.1.0"
