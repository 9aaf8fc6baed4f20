"""Draw the first 64 training images of ``digits_m`` (the README's picture).

    python scripts/digits_m_grid.py docs/digits_m.png
"""

import sys

import numpy as np


def main(out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xbn import _files
    from xbn.data import load_source

    split = load_source("digits_m").split("train")
    images, labels = [], []
    for image, label in split.make().take(64):
        images.append(np.asarray(image, np.uint8))
        labels.append(int(label))
    figure, axes = plt.subplots(8, 8, figsize=(6, 6.3))
    for axis, image, label in zip(axes.flat, images, labels):
        axis.imshow(image, interpolation="nearest")
        axis.set_title(str(label), fontsize=7, pad=1)
        axis.axis("off")
    figure.suptitle("digits_m: the first 64 training images (label above each)", fontsize=9)
    figure.tight_layout()
    with _files.atomic_path(out) as tmp:
        figure.savefig(tmp, dpi=100, format="png")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/digits_m.png")
