"""A child: one implementation at one thread count, in a fresh interpreter."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from bench.core.config import (
    CONFIGS,
    DATA_FILES,
    MODULES,
    N_CLASSES,
    N_FEATURES,
    ROOT,
    UNSUPPORTED,
    WORKS,
    Plan,
    plan_work,
)
from bench.core.data import load_data
from bench.core.gemm import gemm_bound
from bench.core.runs import measure, peak_rss_mb, reset_peak_rss


def child(impl: str, threads: int, folder: Path, plan: Plan) -> dict[str, dict[str, Any]]:
    """Each configuration's measurement by ``impl``; for ``gemm``, the bound at A's shapes."""
    importlib.import_module(MODULES[impl])
    out: dict[str, dict[str, Any]] = {}
    with threadpool_limits(limits=threads):
        if impl == "gemm":
            work = WORKS["A"]
            out["A"] = gemm_bound((N_FEATURES, work.hidden, N_CLASSES), work.batch_size)
            return out
        for config in CONFIGS:
            if (impl, config) in UNSUPPORTED:
                continue
            work, repeats = plan_work(plan, config)
            reset_peak_rss()
            out[config] = measure(impl, work, load_data(folder / DATA_FILES[config]), threads,
                                  repeats)
            out[config]["peak_rss_mb"] = peak_rss_mb()
    return out


def spawn(impl: str, threads: int, folder: Path, quick: bool) -> dict[str, dict[str, Any]]:
    """Run :func:`child` in a fresh interpreter; on failure every configuration gets
    ``{"error": ...}``."""
    cmd = [sys.executable, "-m", "bench.core", "--one", impl, str(threads),
           "--data", str(folder), *(["--quick"] if quick else [])]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"]
        return {config: {"error": f"{impl} failed: {lines[-1]}"} for config in CONFIGS}
    return json.loads(proc.stdout.strip().splitlines()[-1])
