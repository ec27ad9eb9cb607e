"""The PyTorch side of the companion package.

Importing it imports PyTorch, never Keras or TensorFlow. Every loss is imported from here
(``from companion.torch import dice_loss``); this package is the only module that gathers
them. They are defined in ``companion.torch.regression`` (Huber and pseudo-Huber),
``companion.torch.segmentation`` (BCE, Dice, focal, Tversky and the cross-entropies) and
``companion.torch.precision`` (the precision and F-beta surrogates). The U-Net is in
``companion.torch.models``; the training script is ``python -m companion.torch.train``.
"""

from companion.torch import precision as _precision
from companion.torch import regression as _regression
from companion.torch import segmentation as _segmentation
from companion.torch.precision import *  # noqa: F403
from companion.torch.regression import *  # noqa: F403
from companion.torch.segmentation import *  # noqa: F403

__all__ = _regression.__all__ + _segmentation.__all__ + _precision.__all__
