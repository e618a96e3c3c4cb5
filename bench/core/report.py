"""The parent: it writes the data, gathers the children's measurements and reports them."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.core.child import spawn
from bench.core.config import (
    CONFIGS,
    DATA_FILES,
    FULL,
    IMPLS,
    NOTES,
    PEERS,
    QUICK,
    THREADS,
    UNSUPPORTED,
    WORKS,
    Plan,
    Work,
    plan_work,
)
from bench.core.data import digits, save_data, synthetic
from bench.machine import machine_info, print_report


def ratio(num: float | None, den: float | None) -> float | None:
    return None if num is None or den is None else num / den


def describe(config: str, threads: int, impl: str, m: dict[str, Any], rows: int) -> str:
    """One human-readable line for a child's measurement."""
    head = f"{config} threads={threads} {impl:8s}"
    if "error" in m:
        return f"{head} {m['error']}"
    if impl == "gemm":
        return (f"{head} {m['gflops']:.1f} GFLOP/s at A's shapes: bound "
                f"{WORKS[config].batch_size / m['batch_s']:,.0f} samples/s")
    rate = "" if config == "C" else f" {rows / m['seconds']:>11,.0f} samples/s"
    acc = f" acc {m['accuracy']:.4f}" if "accuracy" in m else ""
    return (f"{head} {m['seconds']:8.4f} s{rate}  loss {m['loss']:.4f}{acc}"
            f"  rss {m['peak_rss_mb']:.0f} MB")


def summarize(config: str, threads: int, measured: dict[str, dict[str, Any]],
              gemm: dict[str, Any], work: Work, rows: int) -> dict[str, Any]:
    """One result object of SPEC section 9 from the children's measurements."""
    ok = {impl: m for impl, m in measured.items() if "error" not in m}
    ours = ok.get("ours", {})

    def peers(key: str) -> dict[str, Any]:
        return {p: ok.get(p, {}).get(key) for p in PEERS}

    extra: dict[str, Any] = {
        "final_loss": ours.get("loss"),
        "peer_losses": peers("loss"),
        # ours' speed-up over torch: above 1 means ours is faster, for either metric.
        "ratio_vs_torch": ratio(peers("seconds")["torch"], ours.get("seconds")),
        "peak_rss_mb": ours.get("peak_rss_mb"),
        "peer_peak_rss_mb": peers("peak_rss_mb"),
        "runs_s": ours.get("runs_s"),
        "lr": work.lr,
        "batch_size": work.batch_size,
    }
    result: dict[str, Any] = {"config": config, "threads": threads}
    if config == "C":
        result |= {"metric": "seconds", "better": "lower", "ours": ours.get("seconds"),
                   "peers": peers("seconds")}
        extra |= {"epochs": work.epochs, "test_accuracy": ours.get("accuracy"),
                  "peer_test_accuracy": peers("accuracy")}
    else:
        rate = {impl: rows / m["seconds"] for impl, m in ok.items()}
        bound = None if "error" in gemm else work.batch_size / gemm["batch_s"]
        result |= {"metric": "samples_per_s", "better": "higher", "ours": rate.get("ours"),
                   "peers": {p: rate.get(p) for p in PEERS}, "bound": bound}
        extra |= {
            "rows": rows,
            "epoch_s": ours.get("seconds"),
            "peer_epoch_s": peers("seconds"),
            "fraction_of_bound": ratio(rate.get("ours"), bound),
            "bound_epoch_s": ratio(rows, bound),
            "gemm_gflops": gemm.get("gflops"),
        }
    notes = NOTES.get(config, []) + [m["error"] for m in measured.values() if "error" in m]
    if (extra.get("fraction_of_bound") or 0.0) > 1.0:
        notes.append("ours beat the bound: the GEMM timing was disturbed (a busy machine?)")
    result["extra"] = extra | {"notes": notes}
    return result


def write_data(plan: Plan, folder: Path) -> dict[str, int]:
    """Write each data file into ``folder``; returns every configuration's training rows."""
    files = {"synthetic.npz": synthetic(plan.rows), "digits.npz": digits()}
    for name, data in files.items():
        save_data(data, folder / name)
    return {config: len(files[DATA_FILES[config]].y) for config in CONFIGS}


def run_all(quick: bool) -> None:
    plan = QUICK if quick else FULL
    machine = machine_info(("torch", "scikit-learn", "threadpoolctl"))
    print(f"bench.core {'--quick' if quick else 'full'}: {machine['cpu']}, {machine['cores']} "
          f"cores, numpy BLAS {machine['blas']}", flush=True)
    measured: dict[int, dict[str, dict[str, dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-core-") as tmp:
        rows = write_data(plan, Path(tmp))
        for threads in THREADS:
            measured[threads] = {}
            for impl in ("gemm", *IMPLS):
                out = spawn(impl, threads, Path(tmp), quick)
                for config, m in out.items():
                    print(describe(config, threads, impl, m, rows[config]), flush=True)
                measured[threads][impl] = out
    results = []
    for config in CONFIGS:
        work, _ = plan_work(plan, config)
        for threads in THREADS:
            by_impl = {impl: measured[threads][impl].get(config)
                       or {"error": UNSUPPORTED[impl, config]} for impl in IMPLS}
            # A and B share their layer shapes: the GEMM bound measured at A's serves both.
            gemm = measured[threads]["gemm"]["A"]
            results.append(summarize(config, threads, by_impl, gemm, work, rows[config]))
    print_report("core", machine, results)
