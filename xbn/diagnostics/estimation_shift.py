"""Estimation shift: how far BatchNorm's moving statistics are from the truth.

Huang et al. ("Delving into the Estimation Shift of Batch Normalization in
a Network", CVPR 2022) call the gap between a BatchNorm layer's *estimated*
population statistics (its moving mean and variance) and the *expected*
ones (those of the input it actually receives at inference) its
estimation shift, and show that it piles up with depth: every layer's
input depends on the (shifted) normalization of all layers before it.
Their XBNBlock replaces one BatchNorm per block by a batch-free GroupNorm
to stop the accumulation.  The paper's official code does not ship the
measurement; this module does.

For every BatchNorm layer, with the network in inference mode (every
earlier BN normalizing with its own moving statistics, exactly what the
layer sees when serving), the population mean ``mu`` and biased variance
``var`` of the layer's input are pooled exactly over the data
(:mod:`xbn.diagnostics.statistics`), and compared per channel ``c`` with
the moving mean ``m`` and moving variance ``v``, ``eps`` being the layer's
own epsilon:

- mean shift ``sqrt(mean_c((m_c - mu_c)^2 / (var_c + eps)))``: the RMS
  offset of the layer's normalized output, in units of its true standard
  deviation;
- variance shift ``mean_c |log((v_c + eps) / (var_c + eps))|``: the mean
  log-ratio of the variance used to the true one (0.1 is a 10% scale
  error).

Both are scale-free (unchanged when a channel's input is multiplied by a
constant) and zero exactly when the moving statistics equal the
population statistics: after :func:`xbn.diagnostics.recalibrate_bn` on the
same data they are close to zero.
"""

import dataclasses
import math

import numpy as np

from xbn import _checks
from xbn.diagnostics.statistics import StatisticsCollector
from xbn.errors import UsageError


@dataclasses.dataclass
class LayerShift:
    """The estimation shift of one BatchNorm layer.

    Attributes:
        name: the layer's name.
        index: its position among the model's layers.
        depth: ``index`` relative to the model's depth, 0 (input) to 1
            (output); comparable between models of one family.
        channels: number of channels.
        mean_shift, var_shift: see the module docstring.
    """

    name: str
    index: int
    depth: float
    channels: int
    mean_shift: float
    var_shift: float


@dataclasses.dataclass
class ShiftReport:
    """What :func:`estimation_shift` measured on one model.

    Attributes:
        model: the model's name (or a label given by the caller).
        examples: images the population statistics were pooled over.
        layers: a :class:`LayerShift` per BatchNorm, in depth order.
    """

    model: str
    examples: int
    layers: list

    def _average(self, attribute):
        values = [getattr(layer, attribute) for layer in self.layers]
        return float(np.mean(values)) if values else math.nan

    @property
    def mean_shift(self):
        """Mean shift averaged over the layers (NaN without BatchNorm)."""
        return self._average("mean_shift")

    @property
    def var_shift(self):
        """Variance shift averaged over the layers (NaN without BatchNorm)."""
        return self._average("var_shift")

    @property
    def max_mean_shift(self):
        """The largest mean shift of any layer (NaN without BatchNorm)."""
        return max((layer.mean_shift for layer in self.layers), default=math.nan)

    def summary(self):
        """One line: layer count and the averages."""
        if not self.layers:
            return f"{self.model}: no BatchNorm layer (nothing can shift)"
        return (
            f"{self.model}: {len(self.layers)} BatchNorm layers over {self.examples} images; "
            f"mean shift {self.mean_shift:.4f} on average (max {self.max_mean_shift:.4f}), "
            f"variance shift {self.var_shift:.4f}"
        )

    def table(self):
        """A Markdown table, one row per BatchNorm layer in depth order."""
        rows = [
            "| # | layer | depth | channels | mean shift | variance shift |",
            "| ---: | --- | ---: | ---: | ---: | ---: |",
        ]
        for i, layer in enumerate(self.layers, 1):
            rows.append(
                f"| {i} | {layer.name} | {layer.depth:.2f} | {layer.channels} | "
                f"{layer.mean_shift:.4f} | {layer.var_shift:.4f} |"
            )
        return "\n".join(rows)

    def to_dict(self):
        """A JSON-ready dict (the averages included)."""
        return {
            "model": self.model,
            "examples": self.examples,
            "mean_shift": self.mean_shift,
            "var_shift": self.var_shift,
            "max_mean_shift": self.max_mean_shift,
            "layers": [dataclasses.asdict(layer) for layer in self.layers],
        }


def shift_metrics(moving_mean, moving_var, mean, var, epsilon):
    """``(mean shift, variance shift)`` of one layer (module docstring).

    Args:
        moving_mean, moving_var: the layer's estimates, per channel.
        mean, var: the population mean and biased variance, per channel.
        epsilon: the layer's epsilon.
    """
    moving_mean, moving_var, mean, var = (
        np.asarray(a, np.float64) for a in (moving_mean, moving_var, mean, var)
    )
    true_var = var + epsilon
    mean_shift = math.sqrt(float(np.mean(np.square(moving_mean - mean) / true_var)))
    var_shift = float(np.mean(np.abs(np.log((moving_var + epsilon) / true_var))))
    return mean_shift, var_shift


def estimation_shift(model, dataset, steps=None, strategy=None, label=None, collector=None, progress=None):
    """The estimation shift of every BatchNorm layer of ``model``.

    Args:
        model: a functional keras model with xbn or keras BatchNorm layers
            (a model without any gives an empty report).
        dataset: ``(images, labels)`` or ``images`` batches, preprocessed for
            the model (e.g. ``Pipeline.evaluation(split)``).
        steps: batches to use (default: all of ``dataset``).
        strategy: the ``tf.distribute`` strategy holding the model, if any.
        label: the report's model name (default: ``model.name``).
        collector: a :class:`~xbn.diagnostics.StatisticsCollector` of this
            model to reuse (saves tracing the network again).
        progress: optional ``progress(step)`` callback per batch.

    Returns:
        A :class:`ShiftReport`.
    """
    if steps is not None:
        _checks.check_int("estimation_shift", "steps", steps, minimum=1, type_error=ValueError)
    collector = collector or StatisticsCollector(model, strategy)
    if collector.model is not model:
        raise UsageError("estimation_shift: the collector belongs to another model.")
    if not collector.layers:
        return ShiftReport(label or model.name, 0, [])
    stats, examples = collector.collect(dataset, steps, training=False, progress=progress)
    positions = {layer.name: i for i, layer in enumerate(model.layers)}
    last = max(len(model.layers) - 1, 1)
    layers = []
    for layer in collector.layers:
        mean, var, _ = stats[layer.name]
        mean_shift, var_shift = shift_metrics(
            layer.moving_mean.numpy(), layer.moving_variance.numpy(), mean, var, layer.epsilon
        )
        index = positions[layer.name]
        layers.append(LayerShift(layer.name, index, index / last, len(mean), mean_shift, var_shift))
    return ShiftReport(label or model.name, examples, layers)


def plot_shift(reports, path, title=None):
    """Mean and variance shift against relative depth, one line per report.

    Args:
        reports: :class:`ShiftReport` objects (a model without BatchNorm
            is listed in the legend only).
        path: the PNG file to write (atomically).
        title: the figure's title.

    Returns:
        ``path``.
    """
    from xbn import _plotting

    plt = _plotting.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for report in reports:
        depth = [layer.depth for layer in report.layers]
        for ax, attribute in zip(axes, ("mean_shift", "var_shift")):
            ax.plot(
                depth, [getattr(layer, attribute) for layer in report.layers], "o-", markersize=3,
                label=f"{report.model} (avg {getattr(report, attribute):.3f})"
                if report.layers else f"{report.model} (no BatchNorm)",
            )
    axes[0].set(xlabel="relative depth of the BatchNorm layer", ylabel="mean shift",
                title="mean shift  sqrt(mean_c (m - mu)^2 / (var + eps))")
    axes[1].set(xlabel="relative depth of the BatchNorm layer", ylabel="variance shift",
                title="variance shift  mean_c |log((v + eps) / (var + eps))|")
    for ax in axes:
        ax.set_xlim(0, 1)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or "Estimation shift of BatchNorm's moving statistics (inference mode)")
    fig.tight_layout()
    return _plotting.save_png(fig, path)
