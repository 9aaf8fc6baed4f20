"""What the machine is: its CPU, the CPU's vector extensions, accelerators.

Speed depends on them more than on anything in xbn: the same ResNet-50
training step ran 2.4x faster on one 2-core machine of this project's kind
than on another, and bfloat16 pays only where the CPU computes it natively
(AVX-512-BF16, AMX).  So every speed figure names the CPU it was measured on
(:func:`cpu_label`), and the tools warn when a setting is likely to cost more
than it gives on this machine (:func:`execution_warnings`).
"""

import os
import platform

# A ResNet-50 training step with XLA against without, on the CPUs of
# models/bench (the "with XLA vs without" rows; tests/test_hardware.py checks
# that these are the published figures).
XLA_ON_CPU = (0.47, 0.66)

# /proc/cpuinfo flags that decide how fast TensorFlow's CPU kernels (oneDNN)
# run, in the words a reader knows them by.
EXTENSIONS = (
    ("avx2", "AVX2"),
    ("avx512f", "AVX-512"),
    ("avx512_vnni", "AVX-512-VNNI"),
    ("avx512_bf16", "AVX-512-BF16"),
    ("avx512_fp16", "AVX-512-FP16"),
    ("amx_tile", "AMX"),
    ("amx_bf16", "AMX-BF16"),
    ("amx_fp16", "AMX-FP16"),
)


def _cpuinfo():
    fields = {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu():
    """The CPU: ``{"model", "vendor", "family", "model_number", "extensions", "cores"}``.

    ``extensions`` lists the names of :data:`EXTENSIONS` the CPU has (an
    empty list where ``/proc/cpuinfo`` cannot be read, e.g. off Linux).
    """
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    return {
        "model": info.get("model name") or platform.processor() or platform.machine(),
        "vendor": info.get("vendor_id", ""),
        "family": info.get("cpu family", ""),
        "model_number": info.get("model", ""),
        "extensions": [name for flag, name in EXTENSIONS if flag in flags],
        "cores": os.cpu_count(),
    }


def cpu_label(info=None):
    """``"AMD EPYC (family 26 model 2; AVX2, AVX-512, AVX-512-VNNI, AVX-512-BF16), 2 cores"``."""
    info = info or cpu()
    details = []
    if info.get("family"):
        details.append(f"family {info['family']} model {info.get('model_number', '?')}")
    extensions = info.get("extensions")
    if extensions is None:
        details.append("vector extensions not recorded")
    else:
        details.append(", ".join(extensions) or "no AVX2")
    return f"{info['model']} ({'; '.join(details)}), {info.get('cores', '?')} cores"


def accelerators():
    """The names of the GPUs TensorFlow sees (an empty list on a CPU-only machine)."""
    import tensorflow as tf

    names = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        names.append(details.get("device_name", gpu.name))
    return names


def native_precisions(info=None):
    """The reduced precisions this CPU computes natively: a subset of ``{"bfloat16", "float16"}``."""
    extensions = set((info or cpu())["extensions"])
    native = set()
    if extensions & {"AVX-512-BF16", "AMX-BF16"}:
        native.add("bfloat16")
    if extensions & {"AVX-512-FP16", "AMX-FP16"}:
        native.add("float16")
    return native


def execution_warnings(mixed_precision="none", jit_compile=False, info=None, devices=None):
    """Notes for settings that are likely slower than the default on this machine.

    Args:
        mixed_precision: ``"none"``, ``"float16"`` or ``"bfloat16"``.
        jit_compile: whether XLA compiles the step.
        info: :func:`cpu` (read from this machine by default).
        devices: :func:`accelerators` (asked of TensorFlow by default).

    Returns:
        A list of one-line messages (empty when nothing is to be said).
    """
    devices = accelerators() if devices is None else devices
    if devices:
        return []
    info = info or cpu()
    label = cpu_label(info)
    notes = []
    if jit_compile:
        low, high = XLA_ON_CPU
        speed = f"{low:.2f}x" if low == high else f"{low:.2f}x to {high:.2f}x"
        notes.append(
            "`jit_compile` on a machine without a GPU or TPU: XLA's CPU code is slower than "
            "TensorFlow's own CPU kernels for these networks (a ResNet-50 training step ran "
            f"at {speed} the speed without XLA on the CPUs measured, see "
            f"models/bench/README.md); drop `jit_compile` here ({label}) unless you "
            "measured a gain."
        )
    if mixed_precision != "none" and mixed_precision not in native_precisions(info):
        needed = "AVX-512-BF16 or AMX-BF16" if mixed_precision == "bfloat16" else "AVX-512-FP16 or AMX-FP16"
        notes.append(
            f"`mixed_precision` {mixed_precision} on a CPU without {needed} ({label}): "
            f"{mixed_precision} is emulated there and usually slower than float32; it pays on "
            "GPUs and on CPUs with those instructions."
        )
    return notes
