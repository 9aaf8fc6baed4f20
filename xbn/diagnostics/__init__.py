"""Diagnostics of BatchNorm's statistics: estimation shift and precise BN.

- :func:`estimation_shift`: how far each BatchNorm's moving statistics are
  from the population statistics of what it receives when serving.
- :func:`recalibrate_bn`: population statistics instead of moving averages.
"""

from xbn.diagnostics.estimation_shift import (
    LayerShift,
    ShiftReport,
    estimation_shift,
    plot_shift,
    shift_metrics,
)
from xbn.diagnostics.precise_bn import RecalibrationReport, recalibrate_bn
from xbn.diagnostics.statistics import StatisticsCollector, batch_norm_layers, collect_statistics

__all__ = [
    "LayerShift", "RecalibrationReport", "ShiftReport", "StatisticsCollector", "batch_norm_layers",
    "collect_statistics", "estimation_shift", "plot_shift", "recalibrate_bn", "shift_metrics",
]
