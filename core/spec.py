"""The numeric part of a job spec: model, loss, optimizer and schedule.

Plain dataclasses so that the core stays numpy-only; the API validates the same classes with
pydantic (``__pydantic_config__`` is read by pydantic without the core importing it), and every
value check lives here, in ``__post_init__``, so both paths refuse the same input with the same
message naming the field.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

Activation = Literal["sigmoid", "tanh", "relu", "leaky_relu", "linear"]
Output = Literal["softmax", "sigmoid", "linear"]
Loss = Literal["mse", "cross_entropy", "binary_cross_entropy"]
Init = Literal["auto", "xavier", "he"]
DType = Literal["float32", "float64"]

HIDDEN_ACTIVATIONS: tuple[str, ...] = ("sigmoid", "tanh", "relu", "leaky_relu", "linear")
OUTPUTS: tuple[str, ...] = ("softmax", "sigmoid", "linear")
LOSSES: tuple[str, ...] = ("mse", "cross_entropy", "binary_cross_entropy")
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")

# Which output layers each loss is defined on (SPEC section 3): cross-entropy needs the softmax
# output and binary cross-entropy the sigmoid one, so their gradients fuse to ``p - y``.
LOSS_OUTPUTS: dict[str, tuple[str, ...]] = {
    "mse": ("linear", "sigmoid", "softmax"),
    "cross_entropy": ("softmax",),
    "binary_cross_entropy": ("sigmoid",),
}

_FORBID_EXTRA = {"extra": "forbid"}


class SpecError(ValueError):
    """A job spec value is invalid; the message starts with the field's name."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SpecError(name, f"{value!r} is not one of {', '.join(allowed)}")


def _number(name: str, value: object, *, low: float, high: float = math.inf,
            low_open: bool = False, high_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(name, f"must be a number, got {value!r}")
    if not math.isfinite(value):
        raise SpecError(name, f"must be finite, got {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low and math.isinf(high):
        raise SpecError(name, f"must be {'above' if low_open else 'at least'} {low:g}, "
                              f"got {value!r}")
    if too_low or too_high:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise SpecError(name, f"must be in {lo}{low:g}, {high:g}{hi}, got {value!r}")


# The largest count (epochs, rows, widths) a spec may give: the batch plan's int64 arrays hold
# it, where a larger one crashed the worker that planned the job.
MAX_COUNT = 2**63 - 1


def _integer(name: str, value: object, *, low: int, high: int | None = MAX_COUNT) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(name, f"must be an integer, got {value!r}")
    if value < low:
        raise SpecError(name, f"must be at least {low}, got {value}")
    if high is not None and value > high:
        raise SpecError(name, f"must be at most {high}, got {value}")


@dataclass(frozen=True)
class ModelSpec:
    """Hidden layer widths and activations; input and output widths come from the data."""

    __pydantic_config__ = _FORBID_EXTRA

    hidden: tuple[int, ...] = (64,)
    activation: Activation = "relu"
    output: Output = "softmax"
    init: Init = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(self.hidden))
        for i, width in enumerate(self.hidden):
            _integer(f"model.hidden[{i}]", width, low=1)
        _choice("model.activation", self.activation, HIDDEN_ACTIVATIONS)
        _choice("model.output", self.output, OUTPUTS)
        _choice("model.init", self.init, ("auto", "xavier", "he"))

    @property
    def init_scheme(self) -> str:
        """``auto`` picks He for rectifiers and Xavier for saturating activations."""
        if self.init != "auto":
            return self.init
        return "he" if self.activation in ("relu", "leaky_relu") else "xavier"


@dataclass(frozen=True)
class OptimizerSpec:
    __pydantic_config__ = _FORBID_EXTRA

    name: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    nesterov: bool = False
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        _choice("optimizer.name", self.name, OPTIMIZERS)
        _number("optimizer.lr", self.lr, low=0.0, low_open=True)
        _number("optimizer.momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        _number("optimizer.beta1", self.beta1, low=0.0, high=1.0, high_open=True)
        _number("optimizer.beta2", self.beta2, low=0.0, high=1.0, high_open=True)
        _number("optimizer.eps", self.eps, low=0.0, low_open=True)
        if self.nesterov and (self.name != "sgd" or self.momentum == 0):
            raise SpecError("optimizer.nesterov", "needs sgd with a momentum above 0")

    def check_all_used(self) -> None:
        """Refuse a setting of the other optimizer, which would be ignored without a word. For
        new specs only: stored ones, accepted before this check, must still load."""
        if self.name == "adam" and self.momentum != 0:
            raise SpecError("optimizer.momentum", "is sgd's; adam's first moment is beta1")
        defaults = {f.name: f.default for f in fields(self)}
        for name in ("beta1", "beta2", "eps"):
            if self.name == "sgd" and getattr(self, name) != defaults[name]:
                raise SpecError(f"optimizer.{name}", "is adam's; sgd has none")


@dataclass(frozen=True)
class TrainSpec:
    """Everything that determines the trained weights, and nothing else (SPEC section 4.3)."""

    __pydantic_config__ = _FORBID_EXTRA

    model: ModelSpec = field(default_factory=ModelSpec)
    loss: Loss = "cross_entropy"
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    epochs: int = 10
    batch_size: int = 64
    seed: int = 0
    validation_fraction: float = 0.2
    shards: int = 1
    sync_every: int = 1
    dtype: DType = "float32"
    l2: float = 0.0

    def __post_init__(self) -> None:
        _choice("loss", self.loss, LOSSES)
        if self.model.output not in LOSS_OUTPUTS[self.loss]:
            raise SpecError(
                "loss",
                f"{self.loss} needs a {' or '.join(LOSS_OUTPUTS[self.loss])} output, "
                f"not {self.model.output}",
            )
        _integer("epochs", self.epochs, low=1)
        _integer("batch_size", self.batch_size, low=1)
        _integer("seed", self.seed, low=0, high=None)  # any size seeds numpy's generators
        _number("validation_fraction", self.validation_fraction, low=0.0, high=0.9)
        _integer("shards", self.shards, low=1)
        if self.batch_size < self.shards:
            raise SpecError(
                "batch_size", f"{self.batch_size} is below shards={self.shards}: "
                "every shard needs at least one row of each batch")
        _integer("sync_every", self.sync_every, low=1)
        _choice("dtype", self.dtype, ("float32", "float64"))
        _number("l2", self.l2, low=0.0)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainSpec:
        """Build from a parsed JSON object; unknown keys are an error naming them."""
        data = dict(data)
        nested = {"model": ModelSpec, "optimizer": OptimizerSpec}
        for key, sub in nested.items():
            if key in data:
                if not isinstance(data[key], dict):
                    raise SpecError(key, "must be an object")
                _known_keys(key + ".", data[key], sub)
                data[key] = sub(**data[key])
        _known_keys("", data, cls)
        return cls(**data)

    @classmethod
    def from_job_spec(cls, data: dict[str, Any]) -> TrainSpec:
        """The numeric part of a whole job spec: the service's fields (name, dataset,
        max_workers, ...) are left out, the rest is read as ``from_dict`` reads it."""
        return cls.from_dict({key: value for key, value in data.items()
                              if key in cls.__dataclass_fields__})

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["model"]["hidden"] = list(self.model.hidden)
        return out


def _known_keys(prefix: str, data: dict[str, Any], cls: type) -> None:
    names = {f.name for f in fields(cls)}
    for key in data:
        if key not in names:
            raise SpecError(prefix + key, "unknown field")
