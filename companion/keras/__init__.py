"""The Keras 3 side of the companion package, on any Keras backend.

Everything here uses ``keras.ops`` only; the loss classes are registered for serialization
under the package name ``"companion"``. The names below are re-exported from
``companion.keras.losses``.
"""

from companion.keras.losses import Huber, PseudoHuber, huber, pseudo_huber

__all__ = ["Huber", "PseudoHuber", "huber", "pseudo_huber"]
