"""The PyTorch side of the companion package.

Importing it imports PyTorch, never Keras or TensorFlow. The names below are re-exported from
``companion.torch.losses``.
"""

from companion.torch.losses import HuberLoss, PseudoHuberLoss, huber_loss, pseudo_huber_loss

__all__ = ["HuberLoss", "PseudoHuberLoss", "huber_loss", "pseudo_huber_loss"]
