"""The numeric core against PyTorch and scikit-learn on the same work, and against the GEMM bound.

Run as ``python -m bench.core [--quick]``. Configurations (SPEC section 9, PEERS.md):

- A: 784-128-10, relu hidden, softmax + cross-entropy, SGD, batch 128, one epoch of synthetic
  rows; metric samples/s.
- B: A with a sigmoid hidden layer, a sigmoid output and MSE on one-hot targets (scikit-learn
  has no MSE classifier: its figure is null).
- C: scikit-learn's bundled digits, 64-64-10 relu softmax, batch 32, 50 epochs; metric seconds,
  with test accuracy.

Every (implementation, thread count) runs in a fresh child process
(``python -m bench.core --one IMPL THREADS --data FOLDER``) so that thread pools never carry
over. For each configuration in turn the child warms up, times a few fresh training runs and
keeps their median and its own peak memory (the mark reset between configurations); it prints
them as one JSON line. The parent writes the data once, gathers the children's lines, and prints
the report: human-readable lines, then the JSON object of SPEC section 9 as the last line.

Modules: ``config`` (what is measured), ``data``, ``runs`` (a run per implementation),
``gemm`` (the bound), ``child`` and ``report`` (the parent).
"""
