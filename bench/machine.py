"""What every benchmark reports about the machine, and its closing JSON line (SPEC section 9)."""

from __future__ import annotations

import json
import math
import os
import platform
from importlib import metadata
from typing import Any

import numpy as np
from threadpoolctl import threadpool_info


def cpu_model() -> str:
    """The ``model name`` line of /proc/cpuinfo, else what the platform module says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def numpy_blas() -> dict[str, Any]:
    """numpy's BLAS as threadpoolctl sees it: library, version and the kernel it dispatched to."""
    blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
    # Other packages (scipy, torch) may load a BLAS of their own; numpy's is the one that
    # lives in numpy's wheel.
    ours = [p for p in blas if "numpy" in p["filepath"]] or blas
    if not ours:
        return {"library": None, "version": None, "kernel": None}
    info = ours[0]
    return {"library": info["internal_api"], "version": info.get("version"),
            "kernel": info.get("architecture")}


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine_info(packages: tuple[str, ...] = ()) -> dict[str, Any]:
    """CPU, core count, numpy's BLAS, the 1-minute load average when the run started, and the
    versions of python, numpy and ``packages``."""
    blas = numpy_blas()
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "blas": " ".join(str(v) for v in blas.values() if v),
        "blas_library": blas["library"],
        "blas_version": blas["version"],
        "blas_kernel": blas["kernel"],
        "python": platform.python_version(),
        "numpy": np.__version__,
        # Other work on the machine skews every figure, two-thread ones most: say how busy it was.
        "load_1m": os.getloadavg()[0],
    }
    for name in packages:
        info[name] = package_version(name)
    return info


def cpu_ticks() -> tuple[int, int] | None:
    """(ticks stolen by the hypervisor, all ticks) of every CPU since boot, from /proc/stat;
    None where there is none."""
    try:
        with open("/proc/stat", encoding="utf-8") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal guest guest_nice; guests are in user
    return (fields[7], sum(fields[:8])) if len(fields) >= 8 else None


def steal_percent(since: tuple[int, int] | None) -> float | None:
    """The share of CPU time since ``since`` (``cpu_ticks``) that the hypervisor gave other
    guests: time a virtual machine's cores stood still while its processes wanted them."""
    now = cpu_ticks()
    if since is None or now is None or now[1] <= since[1]:
        return None
    return 100.0 * (now[0] - since[0]) / (now[1] - since[1])


def _clean(value: Any) -> Any:
    """Floats to 6 significant digits, and NaN or infinities to null (JSON cannot spell them)."""
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def print_report(bench: str, machine: dict[str, Any], results: list[dict[str, Any]]) -> None:
    """Print the one-line JSON object that closes every benchmark's output (SPEC section 9)."""
    report = {"bench": bench, "machine": machine, "results": results}
    print(json.dumps(_clean(report), allow_nan=False), flush=True)
