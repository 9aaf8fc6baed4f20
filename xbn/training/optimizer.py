"""The optimizer and learning-rate schedule of ``xbn-train``.

SGD with momentum (decoupled weight decay) or AdamW; a linear warm-up then
cosine decay to zero over the run; BatchNorm/GroupNorm scales and offsets
and biases are exempt from weight decay, as in the official XBNBlock recipe;
float16 gets dynamic loss scaling.
"""


def make_optimizer(config, steps_per_epoch):
    """``(optimizer, schedule)`` for a :class:`~xbn.training.TrainConfig`."""
    import keras

    total = config.epochs * steps_per_epoch
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    peak = config.learning_rate
    if warmup:
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=peak / max(warmup, 1), decay_steps=max(total - warmup, 1),
            warmup_target=peak, warmup_steps=warmup,
        )
    else:
        schedule = keras.optimizers.schedules.CosineDecay(peak, decay_steps=max(total, 1))
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(
            schedule, momentum=config.momentum, weight_decay=config.weight_decay or None
        )
    else:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    if config.mixed_precision == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer, schedule
