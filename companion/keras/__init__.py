"""The Keras 3 side of the companion package, on any Keras backend.

Every loss is imported from here (``from companion.keras import Dice``); this package is the
only place that gathers the names of its modules:

- :mod:`companion.keras.regression`: the Huber and pseudo-Huber losses;
- :mod:`companion.keras.segmentation`: weighted BCE, Dice, Dice + BCE, focal, Tversky, the
  weighted and cost-sensitive categorical cross-entropies, the expected cost, and
  :func:`~companion.keras.class_weight_to_sample_weight`;
- :mod:`companion.keras.precision`: the soft F-beta and precision-at-recall losses.

Everything there uses ``keras.ops`` only. Each loss is a function and a ``keras.losses.Loss``
subclass, registered for serialization under the package name ``"companion"``
(``"companion>Dice"``). A loss object keeps its options as attributes: assigning one
(``loss.smooth = 0.5``) checks it as the constructor does, and the loss and its
``get_config()`` use the new value.

The ``dtype`` of the ``Loss`` classes: with ``"float64"``, the functions compute and return
float64 on every backend, but on the torch backend Keras 3.15's reduction in
``keras.losses.Loss`` returns the reduced value in float32, as it does for ``keras.losses``'
own classes.

The U-Net is in :mod:`companion.keras.models`; the training script is
``python -m companion.keras.train``.
"""

from companion.keras import precision as _precision
from companion.keras import regression as _regression
from companion.keras import segmentation as _segmentation
from companion.keras.precision import *  # noqa: F403
from companion.keras.regression import *  # noqa: F403
from companion.keras.segmentation import *  # noqa: F403

__all__ = _regression.__all__ + _segmentation.__all__ + _precision.__all__
