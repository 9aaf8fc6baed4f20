"""A run's history: the CSV, TensorBoard scalars and the PNG of the curves."""

import csv
import io

from xbn import _files, _plotting


def write_csv(path, rows):
    """All epochs so far, one row each (rewritten atomically every epoch)."""
    if not rows:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    _files.atomic_write_text(path, buffer.getvalue())


def write_tensorboard(logdir, row):
    """The epoch's numbers as TensorBoard scalars."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                tf.summary.scalar(key, value, step=row["epoch"])
    writer.flush()
    writer.close()


def plot_curves(path, rows, title, label_smoothing=0.0):
    """Loss and accuracy against epoch, training and validation, as a PNG.

    With label smoothing the training loss is measured against smoothed
    targets (it cannot reach zero) while the validation loss is the plain
    cross-entropy; the plot says so, so the two curves are not misread.
    """
    from matplotlib.ticker import MaxNLocator

    plt = _plotting.pyplot()
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    smoothed = f" (label smoothing {label_smoothing:g})" if label_smoothing else ""
    ax_loss.plot(epochs, [r["loss"] for r in rows], "o-", label=f"training{smoothed}")
    ax_loss.plot(epochs, [r["val_loss"] for r in rows], "s-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.plot(epochs, [r["accuracy"] for r in rows], "o-", label="training")
    ax_acc.plot(epochs, [r["val_accuracy"] for r in rows], "s-", label="validation (inference mode)")
    ax_acc.set(xlabel="epoch", ylabel="top-1 accuracy", title="accuracy", ylim=(0, 1))
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    _plotting.save_png(fig, path)
