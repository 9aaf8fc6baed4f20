"""keras' own layer tests, run against xbn's layers, on three keras backends.

The test files are read from the installed keras wheel
(``keras/src/layers/normalization/batch_normalization_test.py``,
``group_normalization_test.py`` and ``keras/src/layers/convolutional/conv_test.py``),
never copied here.  ``tests/keras_suite_plugin.py`` swaps
``BatchNormalization``, ``GroupNormalization`` and ``Conv2D`` for
``xbn.layers.BatchNorm``, ``GroupNorm`` and ``Conv2D`` before the files are
imported; keras' ``TestCase`` and ``run_layer_test`` are kept.  Each backend
runs in a fresh interpreter (the backend is fixed when keras is imported).

Deselected: the tests of ``conv_test.py`` whose names say ``conv1d`` or
``conv3d``; they build keras' own ``Conv1D``/``Conv3D``, which xbn does not
replace.

Relaxed assertions: xbn's error messages name the fix in their own words, so
these keras patterns, and only these, are replaced by the pattern of xbn's
message for the same error (the plugin fails the run if one is no longer
needed):
"""

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import keras
import pytest

KERAS_SRC = Path(keras.__file__).resolve().parent / "src"
SUITES = {
    "BatchNorm": KERAS_SRC / "layers" / "normalization" / "batch_normalization_test.py",
    "GroupNorm": KERAS_SRC / "layers" / "normalization" / "group_normalization_test.py",
    "Conv2D": KERAS_SRC / "layers" / "convolutional" / "conv_test.py",
}
DESELECT = "not conv1d and not conv3d"
# keras 3.15.1 has this many tests of each file against the swapped class
# (after the deselection); fewer means a test was lost on the way.
EXPECTED_TESTS = {"BatchNorm": 33, "GroupNorm": 12, "Conv2D": 20}

# (keras test, keras' pattern, the pattern of xbn's message for the same error)
RELAXED = [
    ("test_groups_bigger_than_dim_error", "cannot be more than the number of channels",
     r"groups=5 is more than the 4 channels of the input"),
    ("test_groups_not_a_multiple_of_dim_error", "must be a multiple of the number of channels",
     r"the input has 4 channels, which cannot be split into groups=3 equal groups"),
    ("test_undefined_dim_error",
     "input tensor should have a defined dimension but the layer received an input with shape",
     r"the channel axis -1 of the input shape \(None, 2, 2, 2, None\) must be known"),
]
__doc__ += "".join(f"\n- ``{test}``: {keras_pattern!r} -> {ours!r}" for test, keras_pattern, ours in RELAXED)


def _suite_of(testcase):
    classname = testcase.get("classname", "")
    for suite, prefix in (("BatchNorm", "BatchNormalization"), ("GroupNorm", "GroupNormalization"),
                          ("Conv2D", "Conv")):
        if prefix in classname:
            return suite
    raise AssertionError(f"a test of no known suite: {classname}")


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_keras_layer_tests_pass_against_xbn_layers(backend, tmp_path):
    report, used = tmp_path / "report.xml", tmp_path / "relaxed.json"
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "JAX_PLATFORMS": "cpu",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]),
        "XBN_RELAXED": json.dumps(RELAXED),
        "XBN_RELAXED_USED": str(used),
    }
    command = [
        sys.executable, "-m", "pytest", *map(str, SUITES.values()), "-k", DESELECT,
        "-p", "keras_suite_plugin", "-p", "no:cacheprovider", "-p", "no:xdist",
        "-o", "addopts=", "-c", os.devnull, "--rootdir", str(tmp_path), "-q",
        f"--junitxml={report}",
    ]
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert report.exists(), result.stdout[-3000:] + result.stderr[-3000:]
    counts = {suite: {"passed": 0, "failed": [], "skipped": []} for suite in SUITES}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        suite = counts[_suite_of(case)]
        name = case.get("name")
        if case.find("failure") is not None or case.find("error") is not None:
            suite["failed"].append(name)
        elif case.find("skipped") is not None:
            suite["skipped"].append(name)
        else:
            suite["passed"] += 1
    print(f"keras' layer tests on {backend}: " + "; ".join(
        f"{suite} {c['passed']} passed, {len(c['skipped'])} skipped by keras" for suite, c in counts.items()
    ))
    failed = {suite: c["failed"] for suite, c in counts.items() if c["failed"]}
    assert not failed, f"{failed}\n{result.stdout[-6000:]}"
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for suite, c in counts.items():
        assert c["passed"] + len(c["skipped"]) == EXPECTED_TESTS[suite], (suite, c)
        # keras skips a test only for its own reasons (a backend it needs);
        # at most a few, never the suite.
        assert c["passed"] >= EXPECTED_TESTS[suite] - 2, (suite, c)
    assert sorted(map(tuple, json.loads(used.read_text()))) == sorted(RELAXED), (
        "a relaxation is no longer needed; remove it from RELAXED"
    )
