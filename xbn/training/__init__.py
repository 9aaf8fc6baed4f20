"""Training: settings and recipes, the strategy-aware loop, checkpoints.

>>> from xbn.training import TrainConfig
>>> TrainConfig().model, TrainConfig().data
('mobilenetv2_xbn', 'digits')
"""

from xbn.training.config import TrainConfig, load_recipe, resolve
from xbn.training.distribute import mirrored_strategy
from xbn.training.trainer import (
    ExportFailedError,
    NonFiniteLossError,
    changed_settings,
    train,
    weights_digest,
)

__all__ = [
    "ExportFailedError", "NonFiniteLossError", "TrainConfig", "changed_settings", "load_recipe",
    "mirrored_strategy", "resolve", "train", "weights_digest",
]
