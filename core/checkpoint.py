"""A trainer's whole state as bytes: the checkpoint a job resumes from, bit for bit.

Batch positions and shuffles are functions of the step count, so the step is the RNG state.
A checkpoint also holds the model's shape (``Model.metadata``), so it alone yields weights.
"""

from __future__ import annotations

import numpy as np

from core.local_sgd import is_round_start
from core.model import Model
from core.npz import from_npz, to_npz
from core.training import Trainer


def state_bytes(trainer: Trainer) -> bytes:
    """The trainer's state as an .npz. Raises RuntimeError inside a local SGD round, where
    the state is not whole (``Trainer.at_sync``)."""
    if not trainer.at_sync:
        raise RuntimeError(f"step {trainer.step} is inside a local SGD round: no whole state")
    epoch_loss, epoch_rows = trainer.epoch_sums
    arrays: dict[str, np.ndarray] = {"params": trainer.params,
                                     "step": np.array([trainer.step], dtype=np.int64),
                                     "epoch_loss": np.array([epoch_loss]),
                                     "epoch_rows": np.array([epoch_rows])}
    for i, opt in enumerate(trainer.optimizers):
        arrays.update({f"opt{i}.{k}": v for k, v in opt.state().items()})
    job = trainer.job
    arrays.update(Model(job.net, job.encoding, trainer.params, trainer.spec_dict).metadata())
    return to_npz(arrays)


def restore(trainer: Trainer, state: bytes) -> None:
    """Load the bytes of ``state_bytes`` into a trainer of the same job. Raises ValueError
    for a state of other parameters, beyond the job's steps or inside a local SGD round."""
    arrays = from_npz(state)
    params = arrays["params"]
    if params.shape != trainer.params.shape or params.dtype != trainer.params.dtype:
        raise ValueError(f"state holds {params.dtype} parameters of shape {params.shape}; "
                         f"this job needs {trainer.params.dtype} {trainer.params.shape}")
    step = int(arrays["step"][0])
    if not 0 <= step <= trainer.total_steps:
        raise ValueError(f"state is at step {step}, beyond this job's {trainer.total_steps}")
    if trainer.local and not is_round_start(trainer.job, step):
        raise ValueError(f"state is at step {step}, inside a local SGD round")
    trainer.params[...] = params
    for i, opt in enumerate(trainer.optimizers):
        prefix = f"opt{i}."
        opt.load_state({k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
    trainer.resume_at(step, (float(arrays["epoch_loss"][0]), int(arrays["epoch_rows"][0])))


def model_from_state(state: bytes) -> Model:
    """The model at a checkpoint, from the bytes of ``state_bytes`` alone."""
    arrays = from_npz(state)
    return Model.from_flat(arrays, arrays["params"])
