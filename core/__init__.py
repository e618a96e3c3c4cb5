"""The numpy engine: multi-layer perceptrons trained by backpropagation, sharded by rows.

Pure numpy, no I/O: the worker, the API and the ``shardtrain train`` command all call it.
"""
