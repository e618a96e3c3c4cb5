"""The numeric core against PyTorch and scikit-learn, and against the GEMM bound."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.core.child import child
from bench.core.config import FULL, QUICK
from bench.core.report import run_all


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.core",
                                     description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rows, epochs and repeats")
    parser.add_argument("--one", nargs=2, metavar=("IMPL", "THREADS"),
                        help="internal: measure one implementation in this process")
    parser.add_argument("--data", type=Path, help="internal: the data folder for --one")
    args = parser.parse_args(argv)
    if args.one:
        impl, threads = args.one
        out = child(impl, int(threads), args.data, QUICK if args.quick else FULL)
        print(json.dumps(out), flush=True)
    else:
        run_all(args.quick)


if __name__ == "__main__":
    main()
