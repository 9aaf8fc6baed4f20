"""Weights by name (issue 39): every published entry fits its builder, and
downloads work, verify, resume, fail cleanly and are found again offline.

Nothing here reaches the internet: the published entries are checked
against files made in their publishers' layouts (keras.applications' layer
names, torchvision's and the official code's module names, from the PyTorch
references), and downloads come from a server the test starts on
127.0.0.1 (``weights_server.py``), serving files the test makes.
"""

import hashlib
import json
import os
import shutil
import socket

import keras
import numpy as np
import pytest
import torch_resnet
import torch_torchvision
from weights_server import serving

from xbn import _files
from xbn.models import (
    decode_predictions,
    get_model,
    imagenet_class_names,
    list_weights,
    load_torch_weights,
    model_facts,
    pretrained,
    register_weights,
    transfer_weights,
    unregister_weights,
)

SIZE = 64


# -- every published entry fits its builder ------------------------------------------------
def _publisher_state(entry):
    """A state dict (or keras model) in the layout of ``entry``'s publisher, random weights."""
    if entry.format == "keras_h5":
        application = model_facts(entry.model).keras_application
        kwargs = {"alpha": entry.builder_args["alpha"]} if "alpha" in entry.builder_args else {}
        return getattr(keras.applications, application)(weights=None, input_shape=(SIZE, SIZE, 3), **kwargs)
    if entry.model.startswith("mobilenetv2"):
        return torch_torchvision.mobilenet(1.0, entry.classes).state_dict()
    if entry.model.startswith("shufflenetv2"):
        return torch_torchvision.shufflenet(entry.builder_args["alpha"], entry.classes).state_dict()
    group_norm = entry.builder_args.get("bn_options", {}).get("groups", 0) if entry.builder_args.get(
        "bn_kind") == "gn" else 0
    return torch_resnet.reference(entry.model, entry.classes, group_norm=group_norm).state_dict()


@pytest.mark.parametrize("entry", list_weights(), ids=lambda e: e.key)
def test_every_published_entry_fits_its_builder(entry):
    """The model a name builds (with the entry's builder arguments) takes
    every tensor of a file in the publisher's layout, and the file takes
    every weight of the model: no name or shape goes unmatched."""
    model = get_model(entry.model, input_shape=(SIZE, SIZE, 3), classes=entry.classes, **entry.builder_args)
    source = _publisher_state(entry)
    if entry.format == "keras_h5":
        report = transfer_weights(source, model)
        assert not report.left_initial and not report.unused and not report.mismatched, report.summary()
    else:
        report = load_torch_weights(model, source)  # strict: every tensor used, every weight set
        assert report.complete and len(report.loaded) == len(model.weights)
    assert entry.preprocessing in ("caffe", "tf", "torch") and entry.source and entry.license and entry.page
    if entry.url is not None:
        assert entry.url.startswith("https://") and entry.url.rsplit("/", 1)[1] == entry.file_name
    if entry.source == "torchvision":  # torchvision's names carry their SHA-256 prefix
        assert entry.file_hash and entry.file_name.split("-")[-1].startswith(entry.file_hash)


def test_entries_list_their_facts_and_names_resolve():
    names = {e.key for e in list_weights()}
    assert {"resnet50/imagenet", "resnet50/torchvision", "resnet50/timm", "mobilenetv2/imagenet",
            "resnet50_xbn/xbnblock", "shufflenetv2/torchvision"} <= names
    keras_entry = pretrained.weights_entry("resnet50", "imagenet")
    assert keras_entry.hash_algorithm == "md5" and keras_entry.top1 == 74.9 and keras_entry.notop_file_name
    assert keras_entry.as_dict()["class_names"].startswith("imagenet")
    with pytest.raises(ValueError, match="resnet50 has no weights named 'imagenet22k'; its weights names: "
                                         "'imagenet', 'torchvision', 'timm'"):
        pretrained.weights_entry("resnet50", "imagenet22k")
    with pytest.raises(ValueError, match="weights='torchvision' needs layout='torchvision'.*received layout='x'"):
        get_model("resnet50", weights="torchvision", layout="x")
    with pytest.raises(ValueError, match="1000-class classifier; with include_top=True, `classes` must be 1000"):
        get_model("resnet50", weights="imagenet", classes=10)
    with pytest.raises(FileNotFoundError, match="not downloaded automatically: download it by hand from "
                                                "https://drive.google.com/.* to .*resnet50_xbn-xbnblock.pth"):
        get_model("resnet50_xbn", weights="xbnblock")


def test_decode_predictions_gives_imagenets_ids_and_names():
    names = imagenet_class_names()
    assert len(names) == 1000 == len(set(names)) and names[:2] == ["tench", "goldfish"]
    scores = np.zeros((2, 1000), "float32")
    scores[0, [1, 7, 3]] = [0.5, 0.3, 0.2]
    scores[1, 999] = 1.0
    decoded = decode_predictions(scores, top=3)
    assert [c[:2] for c in decoded[0]] == [("n01443537", "goldfish"), ("n01514668", "cock"),
                                            ("n01491361", "tiger shark")]
    assert decoded[1][0] == ("n15075141", "toilet tissue", 1.0)
    assert decode_predictions(np.eye(3)[[2]], top=1, class_names=["a", "b", "c"]) == [[("2", "c", 1.0)]]
    with pytest.raises(ValueError, match="predictions of 3 classes need `class_names`"):
        decode_predictions(np.eye(3))
    with pytest.raises(ValueError, match="argument `top` must be an integer in"):
        decode_predictions(scores, top=0)


# -- downloads ---------------------------------------------------------------------------------
@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    home = tmp_path / "keras-home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home / "models"


@pytest.fixture
def published(tmp_path):
    """A resnet20 weights file (10 classes) served from 127.0.0.1, the model it came from."""
    files = tmp_path / "served"
    files.mkdir()
    keras.utils.set_random_seed(3)
    source = get_model("resnet20", input_shape=(32, 32, 3), classes=10)
    source.save_weights(files / "r20.weights.h5")
    with serving(files) as server:
        yield server, source, files / "r20.weights.h5"


@pytest.fixture
def entry_of():
    names = []

    def register(url, file_name="r20.weights.h5", **facts):
        name = f"test{len(names)}"
        names.append(name)
        facts = {"classes": 10, "class_names": list("0123456789"), "preprocessing": "torch", "input_size": 32,
                 "eval_crop": 1.0, **facts}
        return register_weights("resnet20", name, url=url, file_name=file_name, **facts)

    yield register
    for name in names:
        unregister_weights("resnet20", name)


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _outputs(model):
    x = np.random.default_rng(0).normal(0, 1, (2, 32, 32, 3)).astype("float32")
    return np.asarray(model(x, training=False))


def test_a_name_downloads_verifies_loads_and_is_found_again_offline(published, entry_of, keras_home):
    server, source, file = published
    entry = entry_of(server.url("r20.weights.h5"), file_hash=_sha256(file))
    model = get_model("resnet20", weights=entry.name, input_shape=(32, 32, 3), classes=10)
    np.testing.assert_array_equal(_outputs(model), _outputs(source))
    assert (keras_home / "r20.weights.h5").read_bytes() == file.read_bytes()
    assert not list(keras_home.glob("*.part"))
    assert model.xbn_weights == entry.key and model.xbn_args["weights"] == entry.name
    assert model.xbn_facts.preprocessing == "torch"
    server.shutdown()  # offline: the cache answers
    again = get_model("resnet20", weights=entry.name, input_shape=(32, 32, 3), classes=10)
    np.testing.assert_array_equal(_outputs(again), _outputs(source))
    assert len(server.requests) == 1
    # Feature backbones and models without the top load what they have.
    features = get_model("resnet20", weights=entry.name, features_only=True)
    assert set(features.output) == {"P0", "P1", "P2"}


def test_a_hash_mismatch_keeps_nothing(published, entry_of, keras_home):
    server, _, file = published
    entry = entry_of(server.url("r20.weights.h5"), file_hash="0" * 64)
    with pytest.raises(ValueError) as error:
        get_model("resnet20", weights=entry.name, input_shape=(32, 32, 3), classes=10)
    message = str(error.value)
    assert "\n" not in message and f"has sha256 {_sha256(file)}, not its publisher's {'0' * 64}" in message
    assert "nothing was kept" in message and "download it by hand" in message
    assert not list(keras_home.iterdir())


def test_an_interrupted_download_resumes_from_where_it_stopped(published, entry_of, keras_home):
    server, source, file = published
    entry = entry_of(server.url("r20.weights.h5"), file_hash=_sha256(file))
    server.mode = "cut"
    with pytest.raises(ConnectionError, match=r"ended after [\d,]+ of [\d,]+ bytes; ask again to resume it"):
        get_model("resnet20", weights=entry.name, input_shape=(32, 32, 3), classes=10)
    part = keras_home / "r20.weights.h5.part"
    assert part.stat().st_size == file.stat().st_size // 2 and not (keras_home / "r20.weights.h5").exists()
    server.mode = "normal"
    model = get_model("resnet20", weights=entry.name, input_shape=(32, 32, 3), classes=10)
    np.testing.assert_array_equal(_outputs(model), _outputs(source))
    assert server.requests[-1][1] == f"bytes={file.stat().st_size // 2}-"  # the rest only
    assert not part.exists()


def test_a_server_without_ranges_restarts_the_download_cleanly(published, entry_of, keras_home):
    server, source, file = published
    entry = entry_of(server.url("r20.weights.h5"), file_hash=_sha256(file))
    server.mode = "cut"
    with pytest.raises(ConnectionError):
        get_model("resnet20", weights=entry.name, input_shape=(32, 32, 3), classes=10)
    server.mode = "no_ranges"
    model = get_model("resnet20", weights=entry.name, input_shape=(32, 32, 3), classes=10)
    np.testing.assert_array_equal(_outputs(model), _outputs(source))
    assert (keras_home / "r20.weights.h5").read_bytes() == file.read_bytes()


def test_an_unreachable_host_says_where_to_put_the_file(entry_of, keras_home):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    entry = entry_of(f"http://127.0.0.1:{port}/r20.weights.h5", file_hash="0" * 64)
    with pytest.raises(ConnectionError) as error:
        get_model("resnet20", weights=entry.name, input_shape=(32, 32, 3), classes=10)
    message = str(error.value)
    assert "\n" not in message and "cannot download the weights resnet20/" in message
    assert f"download it by hand from http://127.0.0.1:{port}/r20.weights.h5 to {keras_home / 'r20.weights.h5'}" \
        in message


def test_a_full_disk_is_one_line_before_any_byte_is_written(published, entry_of, keras_home, monkeypatch):
    server, _, file = published
    entry = entry_of(server.url("r20.weights.h5"), file_hash=_sha256(file))
    usage = shutil.disk_usage(".")
    monkeypatch.setattr(_files.shutil, "disk_usage", lambda path: usage._replace(free=1000))
    with pytest.raises(_files.DiskFullError, match="not enough space in .* for the weights resnet20/test0: it needs "
                                                   "about .*Free some space and ask again"):
        get_model("resnet20", weights=entry.name, input_shape=(32, 32, 3), classes=10)
    assert not (keras_home / "r20.weights.h5").exists()


def test_without_a_published_hash_the_first_downloads_hash_is_held_to(published, entry_of, keras_home):
    server, source, file = published
    entry = entry_of(server.url("r20.weights.h5"))
    get_model("resnet20", weights=entry.name, input_shape=(32, 32, 3), classes=10)
    recorded = json.loads((keras_home / pretrained.HASHES_FILE).read_text())
    assert recorded == {"r20.weights.h5": _sha256(file)}
    # The cached file damaged: fetched again, and the same bytes pass.
    (keras_home / "r20.weights.h5").write_bytes(b"damaged")
    notes = []
    path = pretrained.fetch(entry, log=notes.append)
    assert path.read_bytes() == file.read_bytes() and "does not match its sha256 hash" in notes[0]
    # The published file changed: refused against the recorded hash.
    (keras_home / "r20.weights.h5").unlink()
    file.write_bytes(file.read_bytes()[:-1] + b"x")
    with pytest.raises(ValueError, match="not the one recorded at its first download"):
        pretrained.fetch(entry)
    np.testing.assert_array_equal(_outputs(source), _outputs(source))


def test_a_pytorch_file_loads_and_is_kept_converted(tmp_path, entry_of, keras_home, monkeypatch):
    import torch

    files = tmp_path / "served"
    files.mkdir()
    reference = torch_torchvision.shufflenet(0.5, 10)
    payload = files / "shufflenet.pth"
    torch.save(reference.state_dict(), payload)
    digest = _sha256(payload)
    name = f"shufflenet-{digest[:8]}.pth"
    os.rename(payload, files / name)
    with serving(files) as server:
        register_weights(
            "shufflenetv2", "test-torch", url=server.url(name), file_name=name, file_hash=digest[:8],
            format="torch", builder_args={"alpha": 0.5, "layout": "torchvision"}, classes=10,
            class_names=list("0123456789"), preprocessing="torch")
        try:
            model = get_model("shufflenetv2", weights="test-torch", input_shape=(64, 64, 3), classes=10,
                              classifier_activation=None)
            x = np.random.default_rng(0).normal(0, 1, (2, 64, 64, 3)).astype("float32")
            with torch.no_grad():
                want = reference(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
            got = np.asarray(model(x, training=False))
            assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
            converted = list(keras_home.glob("*.weights.h5"))
            assert len(converted) == 1 and model.xbn_args["alpha"] == 0.5
            monkeypatch.setitem(__import__("sys").modules, "torch", None)  # no PyTorch: the converted file
            again = get_model("shufflenetv2", weights="test-torch", input_shape=(64, 64, 3), classes=10,
                              classifier_activation=None)
            np.testing.assert_array_equal(np.asarray(again(x, training=False)), got)
        finally:
            unregister_weights("shufflenetv2", "test-torch")


def test_the_readme_tables_are_the_registry():
    """The README's weights table is xbn.models.list_weights(), and its zoo
    table names every registered model (a family added registers its rows)."""
    from pathlib import Path

    from xbn.models import list_models

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    weights = readme.split("<!-- weights:")[1].split("\n", 1)[1].split("\n\n")[0]
    assert weights.strip() == pretrained.weights_table()
    zoo = readme.split("<!-- zoo:")[1].split("\n\n")[0]
    named = {part.strip("`, ") for line in zoo.splitlines()[3:] for cell in line.split("|")[2:5]
             for part in cell.split(", ") if part.strip("`, ")}
    assert named == set(list_models())
