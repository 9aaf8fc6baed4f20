"""The machine's facts behind every speed figure, and the warnings they give."""

import json
import re
from pathlib import Path

import pytest

from xbn import _hardware

ROOT = Path(__file__).resolve().parent.parent
ZEN5 = {"model": "AMD EPYC", "vendor": "AuthenticAMD", "family": "26", "model_number": "2",
        "extensions": ["AVX2", "AVX-512", "AVX-512-VNNI", "AVX-512-BF16"], "cores": 2}
AVX2_ONLY = {**ZEN5, "family": "23", "model_number": "49", "extensions": ["AVX2"]}


def test_this_machine_is_described():
    info = _hardware.cpu()
    assert info["model"] and info["cores"] >= 1
    assert set(info["extensions"]) <= {name for _, name in _hardware.EXTENSIONS}
    assert _hardware.cpu_label(info).endswith(f"{info['cores']} cores")


def test_cpu_reads_the_flags_of_proc_cpuinfo(monkeypatch):
    monkeypatch.setattr(_hardware, "_cpuinfo", lambda: {
        "model name": "Intel(R) Xeon(R) Platinum 8480+", "vendor_id": "GenuineIntel", "cpu family": "6",
        "model": "143", "flags": "fpu avx2 avx512f avx512_vnni avx512_bf16 avx512_fp16 amx_tile amx_bf16",
    })
    info = _hardware.cpu()
    assert info["extensions"] == ["AVX2", "AVX-512", "AVX-512-VNNI", "AVX-512-BF16", "AVX-512-FP16", "AMX", "AMX-BF16"]
    assert _hardware.native_precisions(info) == {"bfloat16", "float16"}
    assert _hardware.cpu_label(info).startswith(
        "Intel(R) Xeon(R) Platinum 8480+ (family 6 model 143; AVX2, AVX-512, AVX-512-VNNI,"
    )


def test_labels_of_older_records_say_what_was_not_recorded():
    assert _hardware.cpu_label({"model": "AMD EPYC", "extensions": None, "cores": 2}) == (
        "AMD EPYC (vector extensions not recorded), 2 cores"
    )


@pytest.mark.parametrize("info, precision, jit, expected", [
    (ZEN5, "none", False, []),
    (ZEN5, "bfloat16", False, []),  # native bfloat16: no warning
    (ZEN5, "float16", False, ["`mixed_precision` float16 on a CPU without AVX-512-FP16 or AMX-FP16"]),
    (AVX2_ONLY, "bfloat16", False, ["`mixed_precision` bfloat16 on a CPU without AVX-512-BF16 or AMX-BF16"]),
    (ZEN5, "none", True, ["`jit_compile` on a machine without a GPU or TPU"]),
    (AVX2_ONLY, "bfloat16", True, ["`jit_compile`", "`mixed_precision` bfloat16"]),
], ids=["plain", "bf16-native", "fp16-emulated", "bf16-emulated", "xla-on-cpu", "both"])
def test_warnings_name_the_setting_the_machine_and_the_cost(info, precision, jit, expected):
    notes = _hardware.execution_warnings(precision, jit, info=info, devices=[])
    assert len(notes) == len(expected)
    for note, start in zip(notes, expected):
        assert note.startswith(start) and _hardware.cpu_label(info) in note


def test_a_gpu_silences_the_warnings():
    assert _hardware.execution_warnings("float16", True, info=AVX2_ONLY, devices=["NVIDIA H100"]) == []


def test_the_xla_cost_quoted_is_the_range_over_the_published_records():
    """The warning's figures come from models/bench, not from memory."""
    ratios = []
    for path in (ROOT / "models" / "bench").glob("*.json"):
        for row in json.loads(path.read_text())["rows"]:
            if row["case"].startswith("ResNet-50 training step") and row["case"].endswith("with XLA vs without"):
                ratios.append(row["speedup"])
    assert ratios, "no published XLA measurement"
    (note,) = _hardware.execution_warnings("none", True, info=ZEN5, devices=[])
    low, high = re.search(r"ran at ([\d.]+)x(?: to ([\d.]+)x)? the speed", note).groups()
    assert (float(low), float(high or low)) == (round(min(ratios), 2), round(max(ratios), 2))
