"""The package as a newcomer meets it: metadata, public API, README, CI."""

import configparser
import doctest
import importlib
import importlib.metadata
import re
import shlex
from pathlib import Path

import keras
import pytest

import xbn

ROOT = Path(__file__).resolve().parent.parent


def test_version_is_the_installed_distributions():
    assert re.fullmatch(r"\d+\.\d+\.\d+", xbn.__version__)
    assert importlib.metadata.version("xbn") == xbn.__version__


def test_public_layers_are_registered_with_keras():
    from xbn.layers import BatchNorm, GroupNorm, WSConv2D

    for cls in (BatchNorm, GroupNorm, WSConv2D):
        assert keras.saving.get_registered_name(cls) == f"xbn>{cls.__name__}"
        assert keras.saving.get_registered_object(f"xbn>{cls.__name__}") is cls


def test_pyproject_holds_the_build_system_and_the_linter_only():
    """Package metadata lives in setup.cfg; pyproject.toml holds the build
    system and the linter's configuration (issue 22), nothing else."""
    text = (ROOT / "pyproject.toml").read_text()
    tables = re.findall(r"^\[([^\]]+)\]", text, flags=re.M)
    assert tables == ["build-system", "tool.ruff", "tool.ruff.lint", "tool.ruff.lint.isort"]


def _setup_cfg():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config


def test_install_requires_names_the_fixed_stack():
    requires = _setup_cfg()["options"]["install_requires"]
    for requirement in ("tensorflow>=2.21,<2.22", "keras>=3.15,<4", "numpy", "pydot"):
        assert requirement in requires
    assert "tensorflow-addons" not in requires and "tensorflow_addons" not in requires


def test_console_scripts_point_at_callables():
    scripts = _setup_cfg()["options.entry_points"]["console_scripts"].strip().splitlines()
    assert scripts
    for line in scripts:
        name, target = (part.strip() for part in line.split("="))
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), name


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    command = re.search(r'^TEST_COMMAND="(.+)"$', ci, flags=re.M).group(1)
    readme = (ROOT / "README.md").read_text()
    assert f"```bash\n{command}\n```" in readme
    # and the command really installs the test extra and runs pytest
    assert "pip install -e '.[test]'" in command and command.endswith("pytest")
    shlex.split(command)


@pytest.mark.parametrize(
    "module",
    [
        "xbn.layers.batch_norm", "xbn.layers.group_norm", "xbn.layers.ws_conv",
        "xbn.layers.norms", "xbn.models", "xbn.models.registry",
        "xbn.models.preprocessing", "xbn.cli._common",
    ],
)
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_every_data_file_of_the_package_is_in_the_wheel():
    """Files xbn reads at run time (ImageNet's class names, the corruption
    suites) are named by setup.cfg's package_data, or a wheel would leave
    them out and only an editable install would work."""
    import fnmatch

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    patterns = config["options.package_data"]["xbn"].split()
    data = [p.relative_to(ROOT / "xbn").as_posix() for p in (ROOT / "xbn").rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert "models/data/imagenet_classes.tsv" in data
    assert [f for f in data if not any(fnmatch.fnmatch(f, pattern) for pattern in patterns)] == []
