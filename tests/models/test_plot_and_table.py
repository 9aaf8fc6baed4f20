"""xbn-plot diagrams and the generated model table in models/README.md."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from xbn.cli import plot as plot_cli
from xbn.models import summary

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_xbn_plot_writes_a_png(tmp_path, capsys):
    out = tmp_path / "diagrams" / "mnv2.png"
    code = plot_cli.main(
        ["mobilenetv2_xbn", "--model-arg", "alpha=0.35", "--image-size", "32", "--out", str(out)]
    )
    assert code == 0
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    assert list(out.parent.iterdir()) == [out]  # no temporary left behind
    assert "wrote" in capsys.readouterr().out


def test_without_graphviz_it_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    import xbn.models.plot as plot_module

    monkeypatch.setattr(plot_module.shutil, "which", lambda name: None)
    code = plot_cli.main(["mobilenetv2", "--out", str(tmp_path / "x.png")])
    assert code == 2
    err = capsys.readouterr().err
    assert "apt-get install -y graphviz" in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    "argv, message",
    [(["mobilenetv2", "--out", "x.jpg"], "--out must end in one of .png, .svg, .pdf"),
     (["resnet9", "--out", "x.png"], "Unknown model 'resnet9'"),
     (["mobilenetv2", "--out", "x.png", "--model-arg", "alpha"], "--model-arg expects KEY=VALUE")],
)
def test_bad_plot_arguments(argv, message, capsys):
    assert plot_cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_script_wrapper_is_the_console_script():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "plot_model.py"), "--help"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: xbn-plot")


def test_table_generator_writes_the_models_section(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# Zoo\n\n<!-- begin:models -->\n<!-- end:models -->\n")
    rows = summary.write_readme_table(readme, ["mobilenetv2", "mobilenetv2_xbn"], progress=lambda m: None)
    assert rows[0]["params"] == 3_538_984
    assert rows[0]["trainable"] == rows[1]["trainable"]
    text = readme.read_text()
    assert "| `mobilenetv2` | vanilla | 224 | 3,538,984 | 3,504,872 | 0.30 | 0.60 |" in text


def test_published_table_is_current_for_the_mobilenets():
    """models/README.md is generated, not typed: its rows equal a fresh count."""
    published = (ROOT / "models" / "README.md").read_text()
    section = published.split("<!-- begin:models -->")[1].split("<!-- end:models -->")[0]
    names = re.findall(r"^\| `([a-z0-9_]+)` \|", section, flags=re.M)
    from xbn.models import list_models

    assert names == list_models()
    fresh = summary.markdown_table([summary.summarize(n) for n in ("mobilenetv2", "mobilenetv2_xbn")])
    for line in fresh.splitlines()[2:]:
        assert line in section
