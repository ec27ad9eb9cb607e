"""The Keras 3 side of the companion package, on any Keras backend.

Everything here uses ``keras.ops`` only; the loss classes are registered for serialization
under the package name ``"companion"``. Every loss is re-exported here: the regression and
segmentation losses from ``companion.keras.losses``, the F-beta and precision-at-recall
losses from ``companion.keras.precision``. The U-Net is in ``companion.keras.models``; the
training script is ``python -m companion.keras.train``.
"""

from companion.keras import losses as _losses
from companion.keras import precision as _precision
from companion.keras.losses import *  # noqa: F403
from companion.keras.precision import *  # noqa: F403

__all__ = _losses.__all__ + _precision.__all__
