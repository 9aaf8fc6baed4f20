"""Parameter and FLOP counts of zoo models, and the table in models/README.md.

FLOPs are counted analytically at the model's input size: two per
multiply-accumulate of every convolution (regular, grouped, depthwise,
weight-standardized) and Dense layer, for one image.  Normalization,
activation, pooling and additions are left out, as in the usual figures
(keras' ResNet-50, with its stride on the first 1x1 conv, is 3.86 GMACs =
7.72 GFLOPs at 224x224; torchvision's v1.5 is 4.1 GMACs).
"""

import keras
import numpy as np

from xbn import _files
from xbn.errors import UsageError

_TABLE_HEADER = (
    "| model | variant | input | params | trainable | GMACs | GFLOPs | description |\n"
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"
)


def count_params(model):
    """``(total, trainable)`` parameter counts; BN moving statistics are
    counted in the total, as keras' ``count_params`` does."""
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return int(model.count_params()), trainable


def count_macs(model):
    """Multiply-accumulates of one forward pass of one image."""
    if any(d is None for d in model.input_shape[1:]):
        raise UsageError(
            f"count_macs: {model.name!r} has no static input size "
            f"{model.input_shape}; build it with input_shape=(H, W, 3)."
        )
    first = keras.config.image_data_format() == "channels_first"
    macs = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            out = layer.output.shape
            spatial = out[2] * out[3] if first else out[1] * out[2]
            kh, kw = layer.kernel_size
            macs += spatial * kh * kw * (out[1] if first else out[3])
        elif isinstance(layer, keras.layers.Conv2D):  # WSConv2D included
            out = layer.output.shape
            spatial = out[2] * out[3] if first else out[1] * out[2]
            kh, kw, cin_per_group, cout = layer.kernel.shape
            macs += spatial * kh * kw * cin_per_group * cout
        elif isinstance(layer, keras.layers.Dense):
            macs += int(np.prod(layer.kernel.shape))
    return int(macs)


def summarize(name, **kwargs):
    """Build the registered model ``name`` at its default size and count it."""
    from xbn.models.registry import get_model, model_facts

    facts = model_facts(name)
    model = get_model(name, **kwargs)
    total, trainable = count_params(model)
    macs = count_macs(model)
    keras.backend.clear_session()
    return {
        "name": name,
        "variant": facts.variant,
        "input": facts.default_size,
        "params": total,
        "trainable": trainable,
        "macs": macs,
        "flops": 2 * macs,
        "description": facts.description,
    }


def markdown_table(rows):
    lines = [_TABLE_HEADER]
    for r in rows:
        lines.append(
            f"| `{r['name']}` | {r['variant']} | {r['input']} | {r['params']:,} | "
            f"{r['trainable']:,} | {r['macs'] / 1e9:.2f} | {r['flops'] / 1e9:.2f} | "
            f"{r['description']} |"
        )
    return "\n".join(lines)


def write_readme_table(readme, names=None, progress=print):
    """Count every registered model (or ``names``) and write the ``models``
    section of ``readme``.  Returns the rows."""
    from xbn.models.registry import list_models

    rows = []
    for name in names or list_models():
        progress(f"[model-table] {name} ...")
        rows.append(summarize(name))
    _files.replace_section(readme, "models", markdown_table(rows))
    return rows
