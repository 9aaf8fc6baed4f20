"""The optimizer and learning-rate schedule of ``xbn-train``.

SGD with momentum (decoupled weight decay) or AdamW; a linear warm-up then
cosine decay to zero over the run; BatchNorm/GroupNorm scales and offsets
and biases are exempt from weight decay, as in the official XBNBlock recipe;
float16 gets dynamic loss scaling.
"""


def make_optimizer(config, steps_per_epoch, phase=None):
    """``(optimizer, schedule)`` for a :class:`~xbn.training.TrainConfig`.

    ``phase``: ``None`` for a run in one phase; ``"frozen"`` or
    ``"unfrozen"`` for the two phases of ``freeze_epochs``: each has its own
    optimizer and schedule over its own epochs, the second without warm-up
    and at ``config.unfrozen_learning_rate``.
    """
    import keras

    epochs, warmup_epochs, peak = config.epochs, config.warmup_epochs, config.learning_rate
    if phase == "frozen":
        epochs = config.freeze_epochs
        warmup_epochs = min(warmup_epochs, epochs / 2)
    elif phase == "unfrozen":
        epochs, warmup_epochs = config.epochs - config.freeze_epochs, 0.0
        peak = config.unfrozen_learning_rate
    total = epochs * steps_per_epoch
    warmup = int(round(warmup_epochs * steps_per_epoch))
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
