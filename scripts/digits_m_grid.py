"""Draw 64 training images of a digit source, evenly spaced over the split (the docs' pictures).

    python scripts/digits_m_grid.py docs/digits_m.png
    python scripts/digits_m_grid.py docs/mnist_m.png mnist_m
"""

import sys

import numpy as np


def main(out, data="digits_m"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xbn import _files
    from xbn.data import load_source

    split = load_source(data).split("train")
    images, labels = [], []
    picked = set(np.linspace(0, split.size - 1, 64).round().astype(int).tolist())
    for index, (image, label) in enumerate(split.make()):
        if index in picked:
            images.append(np.asarray(image, np.uint8))
            labels.append(int(label))
    figure, axes = plt.subplots(8, 8, figsize=(6, 6.3))
    for axis, image, label in zip(axes.flat, images, labels):
        axis.imshow(image, interpolation="nearest")
        axis.set_title(str(label), fontsize=7, pad=1)
        axis.axis("off")
    figure.suptitle(f"{data}: 64 training images, evenly spaced over the split (label above each)", fontsize=9)
    figure.tight_layout()
    with _files.atomic_path(out) as tmp:
        figure.savefig(tmp, dpi=100, format="png")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*(sys.argv[1:3] or ["docs/digits_m.png"]))
