"""The PyTorch side of the companion package.

Importing it imports PyTorch, never Keras or TensorFlow. Every loss is re-exported here:
the regression and segmentation losses from ``companion.torch.losses``, the precision and
F-beta surrogates from ``companion.torch.precision``. The U-Net is in
``companion.torch.models``; the training script is ``python -m companion.torch.train``.
"""

from companion.torch import losses as _losses
from companion.torch import precision as _precision
from companion.torch.losses import *  # noqa: F403
from companion.torch.precision import *  # noqa: F403

__all__ = _losses.__all__ + _precision.__all__
