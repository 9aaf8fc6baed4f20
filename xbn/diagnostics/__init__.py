"""Diagnostics of BatchNorm's statistics: precise BN (and estimation shift).

- :func:`recalibrate_bn`: population statistics instead of moving averages.
"""

from xbn.diagnostics.precise_bn import RecalibrationReport, recalibrate_bn
from xbn.diagnostics.statistics import StatisticsCollector, batch_norm_layers, collect_statistics

__all__ = [
    "RecalibrationReport", "StatisticsCollector", "batch_norm_layers", "collect_statistics",
    "recalibrate_bn",
]
