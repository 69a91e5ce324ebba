"""Which CPU kernels a run uses: the same on every x86-64 machine by default, or the fastest.

On x86 CPUs torch picks its numerical code paths by what the processor offers: ATen's
vectorised kernels (AVX2 or AVX-512), oneDNN's convolutions (AVX2, AVX-512, AMX) and MKL's
BLAS branch (by instruction set and by vendor). Each path sums in another order, so one seed
trains other weights on another CPU. In `portable` mode (the default) benchbd pins ATen and
oneDNN to AVX2, a level every supported x86-64 CPU has, and MKL to its branch that is the same
on Intel and AMD CPUs, through environment variables the libraries read once, when they first
run; `native` leaves the choice to the libraries (faster, other numbers).
`benchmarks/kernels.py` measures what each variable changes and what pinning costs (1.66x per
pretraining step on one thread of an AVX-512 Xeon).

This module is a leaf: it must not import torch, because the pins only hold when they are set
before torch is first imported. `benchbd/__init__.py` calls `pin_at_import()`, so
`import benchbd` pins; the CLI calls `select()` for `--kernels` before it builds the app
(which imports torch). Spawned workers inherit the environment and pin again when they
import benchbd.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from collections.abc import Mapping
from typing import Any

from benchbd.core.errors import BenchbdError

ENV = "BENCHBD_KERNELS"
MODES = ("portable", "native")
DEFAULT_MODE = "portable"

# What `portable` sets. MKL's reproducible branches other than COMPATIBLE apply to Intel CPUs
# only (on an AMD CPU MKL_CBWR=AVX2 falls back to MKL's own choice, and the numbers change:
# benchmarks/kernels.py --emulate EPYC-Rome); COMPATIBLE gives the same GEMM results on both.
# STRICT makes them independent of memory alignment. oneDNN has no such mode; at AVX2 its
# convolutions gave the same results under emulated CPUs with other cache sizes, and taking
# them off oneDNN (ATen's own convolution) would cost 2.27x instead of 1.66x.
PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "COMPATIBLE,STRICT",
    # numpy's OpenBLAS (under scikit-learn's linear probes and detectors) picks its kernels
    # per CPU as well; Haswell is its AVX2 core type.
    "OPENBLAS_CORETYPE": "Haswell",
}

# The CPU features worth recording: what decides which kernels `native` gets.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "avx_vnni")


class _State:
    mode: str | None = None  # the mode this process applied; None before pin()
    torch_first: bool = False  # torch was imported before the pins could apply
    saved: dict[str, str | None] = {}  # the values the pins replaced, to undo for `native`
    problem: str | None = None  # a bad $BENCHBD_KERNELS met at import


def requested_mode() -> str:
    """The mode asked for through $BENCHBD_KERNELS (default `portable`)."""
    value = os.environ.get(ENV, "").strip().lower() or DEFAULT_MODE
    if value not in MODES:
        raise BenchbdError(f"{ENV} must be 'portable' or 'native', got {value!r}")
    return value


def _holds(mode: str) -> bool:
    """Whether the environment already asks for `mode`'s kernels (set before this process
    started, as a sweep worker inherits them), so torch read them whenever it came in."""
    pinned = all(os.environ.get(name) == value for name, value in PINS.items())
    return pinned if mode == "portable" else not any(name in os.environ for name in PINS)


def pin(mode: str | None = None) -> str:
    """Apply `mode` (default: $BENCHBD_KERNELS) to this process and to the processes it starts.

    Before torch is imported this sets (portable) or restores (native) the library variables,
    and can be called again to change its mind (the CLI does, for `--kernels`). Once torch is
    in the process the kernels are decided: a first call records whether the environment
    already held the pins (`describe()` reports the run as unpinned if not), and a call that
    asks for another mode than the one applied is refused."""
    mode = requested_mode() if mode is None else mode
    if mode not in MODES:
        raise BenchbdError(f"--kernels must be 'portable' or 'native', got {mode!r}")
    if "torch" in sys.modules:
        if _State.mode is None:
            _State.mode, _State.torch_first = mode, not _holds(mode)
        elif mode != _State.mode:
            raise BenchbdError(
                f"--kernels {mode}: this process already runs {_State.mode} kernels (torch is "
                f"imported); set {ENV}={mode} before it starts"
            )
        return mode
    os.environ[ENV] = mode  # spawned workers (sweeps) take the same mode
    _State.problem = None
    for name, value in PINS.items():
        if mode == "portable":
            if name not in _State.saved:
                _State.saved[name] = os.environ.get(name)
            os.environ[name] = value
        elif name in _State.saved:  # native: undo what portable set, keep the user's own
            original = _State.saved.pop(name)
            if original is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = original
    _State.mode = mode
    return mode


def pin_at_import() -> None:
    """`import benchbd`: pin as $BENCHBD_KERNELS asks. A bad value must not break the import:
    the CLI reports it in one line (through `select`), and a library run pins the portable
    default and says so in `describe()`."""
    try:
        pin()
    except BenchbdError as exc:
        value = os.environ[ENV]
        pin(DEFAULT_MODE)
        os.environ[ENV] = value  # kept for the CLI to report
        _State.problem = f"{exc}: ran {DEFAULT_MODE}"


def select(mode: str | None) -> str:
    """The CLI's `--kernels`: apply an explicit mode, or $BENCHBD_KERNELS when None."""
    if mode is None:
        return pin()
    return pin(mode.strip().lower())


def _cpu() -> tuple[str, str, list[str]]:
    """(model name, vendor, ISA flags) from /proc/cpuinfo, or what `platform` knows."""
    model, vendor, flags = "", "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key == "vendor_id" and not vendor:
                    vendor = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
                if model and vendor and flags:
                    break
    except OSError:
        pass
    return (model or platform.processor() or platform.machine(), vendor,
            [f for f in ISA_FLAGS if f in flags])  # fmt: skip


def _libraries(torch: Any, device: str | None) -> dict[str, str | None]:
    """Versions of the libraries whose kernels make the numbers, read from torch's build."""
    config = torch.__config__.show()

    def find(pattern: str) -> str | None:
        found = re.search(pattern, config)
        return found.group(1) if found else None

    libraries = {
        "torch": torch.__version__,
        "blas": find(r"BLAS_INFO=(\w+)"),
        "mkl": find(r"Math Kernel Library Version ([\w.]+)"),
        "onednn": find(r"MKL-DNN v([\w.]+)"),
        "openmp": find(r"OpenMP (\d+)"),
    }
    if device is not None and device.startswith("cuda"):
        libraries["cuda"] = torch.version.cuda
        libraries["cudnn"] = str(torch.backends.cudnn.version())
    return libraries


def level(mode: str, capability: str, pinned: bool) -> str:
    """The name tables compare: `portable-avx2` only when the AVX2 pins really held."""
    cap = capability.lower()
    if mode == "native":
        return f"native-{cap}"
    return "portable-avx2" if pinned and cap == "avx2" else f"unpinned-{cap}"


def _not_exact(mode: str, capability: str, device: str | None) -> str | None:
    """Why another machine could get other numbers from this run; None when it should not."""
    machine = platform.machine()
    if _State.problem is not None:
        return _State.problem
    if device is not None and not device.startswith("cpu"):
        return f"ran on {device}: GPU kernels are not pinned"
    if mode == "native":
        return f"native kernels ({capability}): the same numbers need the same kind of CPU"
    if _State.torch_first:
        return "torch was imported before benchbd, so the kernels could not be pinned"
    if machine.lower() not in ("x86_64", "amd64"):
        return f"{machine} is not x86-64: only x86 kernels are pinned"
    if capability.lower() != "avx2":
        return f"this CPU lacks AVX2: torch runs {capability} kernels"
    return None


def describe(device: str | None = None) -> dict[str, Any]:
    """What ran, for the result file's `runtime.kernels`: the mode, the level the kernels
    really ran at (ATen's capability as torch reports it, not as asked), the pins, the CPU
    and the library versions. `exact_across_machines` says whether another machine should
    give the same numbers bit for bit (same versions and thread counts), `note` why not."""
    import torch  # by now the kernels are decided; reading them changes nothing

    mode = _State.mode or requested_mode()
    capability = torch.backends.cpu.get_cpu_capability()
    cpu, vendor, flags = _cpu()
    note = _not_exact(mode, capability, device)
    pinned = mode == "portable" and not _State.torch_first
    return {
        "mode": mode,
        "level": level(mode, capability, pinned),
        "aten_capability": capability,
        "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "mkl_cbwr": os.environ.get("MKL_CBWR"),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "cpu": cpu,
        "cpu_vendor": vendor or None,
        "cpu_isa": flags,
        "machine": platform.machine(),
        "libraries": _libraries(torch, device),
        "exact_across_machines": note is None,
        "note": note,
    }


def weights_digest(state: Mapping[str, Any]) -> str:
    """sha256 of a state dict, bit for bit (names, dtypes, shapes, values in order): what two
    machines compare to show they trained the same model, where metrics could hide a
    difference in the last bit."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name, tensor in state.items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
        digest.update(raw.numpy().tobytes())
    return digest.hexdigest()
