"""The assignment's MNIST configuration as typed dataclasses, overridable by a JSON file and `--set key=value`.

`TRAINING_CONFIG` and `MODEL_CONFIG` keep the assignment's names and values; the keys after the assignment's four
(model: after its four) are the choices the assignment leaves open:

- `optimizer` "adam": the assignment's `learning_rate` 0.001 is Adam's customary default, and its learning-rate
  sweep (1, 0.001, 0.00001) with "divergence" at 1 reads naturally for Adam; "sgd" (plain) is offered.
- `seed` 0 fixes initialisation, shuffling and dropout; `device` "auto" picks CUDA, then MPS, then the CPU.
- `engine` "manual": the hand-written forward and backward of `mlplab.mnist.backprop` (fast, checked against
  autograd in the tests); "autograd" trains the `nn.Module` with `loss.backward()` (the textbook path).
- `flush_denormals` True: on a CPU, training treats subnormal floats (below 1.2e-38) as zero, as GPUs do by
  default; each subnormal operand costs a CPU ~100 cycles, and Adam's moments, the softmax's smallest
  probabilities and their gradients reach that range (measured up to 1.4x slower steps without it).
- `validation_split` 0.0: the fraction of the training set held out to choose the best epoch; 0 uses the
  test set, which biases the reported test accuracy (see docs/mnist-training.md).
- `softmax_output` False: the assignment's model outputs logits; True appends a softmax (the experiment of 3.2).
- `stopping`: the rule that names the best epoch and, when `enabled`, stops training early and restores the
  best weights (see `mlplab.mnist.best_epoch`).

>>> cfg = resolve_config(overrides=["training.batch_size=6", "model.hidden_sizes=[16]"])
>>> cfg.training.batch_size, cfg.model.hidden_sizes, cfg.training.learning_rate
(6, [16], 0.001)
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlplab.errors import MlplabError

TRAINING_CONFIG: dict[str, Any] = {
    "batch_size": 64,
    "learning_rate": 0.001,
    "num_epochs": 100,
    "test_batch_size": 1000,
    # Choices the assignment leaves open, documented above ("seed" is the random seed).
    "optimizer": "adam",
    "seed": 0,
    "device": "auto",
    "engine": "manual",
    "validation_split": 0.0,
    "flush_denormals": True,
}

MODEL_CONFIG: dict[str, Any] = {
    "input_size": 784,
    "hidden_sizes": [512, 256, 128],
    "num_classes": 10,
    "dropout_rate": 0.2,
    "softmax_output": False,
}

STOPPING_CONFIG: dict[str, Any] = {
    "enabled": False,
    "rule": "smoothed",
    "window": 5,
    "patience": 10,
    "gl_alpha": 5.0,
    "pq_alpha": 0.5,
    "up_strips": 3,
    "strip_length": 5,
}

OPTIMIZERS = ("adam", "sgd")
ENGINES = ("manual", "autograd")
RULES = ("smoothed", "gl", "pq", "up")


@dataclass
class TrainingConfig:
    batch_size: int = 64
    learning_rate: float = 0.001
    num_epochs: int = 100
    test_batch_size: int = 1000
    optimizer: str = "adam"
    seed: int = 0
    device: str = "auto"
    engine: str = "manual"
    validation_split: float = 0.0
    flush_denormals: bool = True


@dataclass
class ModelConfig:
    input_size: int = 784
    hidden_sizes: list[int] = field(default_factory=lambda: [512, 256, 128])
    num_classes: int = 10
    dropout_rate: float = 0.2
    softmax_output: bool = False


@dataclass
class StoppingConfig:
    """Best-epoch rule: "smoothed" (trailing mean of `window` epochs, `patience` epochs without a new
    minimum), or Prechelt's GL (`gl_alpha`), PQ (`pq_alpha`), UP (`up_strips`) over strips of `strip_length`."""

    enabled: bool = False
    rule: str = "smoothed"
    window: int = 5
    patience: int = 10
    gl_alpha: float = 5.0
    pq_alpha: float = 0.5
    up_strips: int = 3
    strip_length: int = 5


@dataclass
class Config:
    training: TrainingConfig = field(default_factory=TrainingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    stopping: StoppingConfig = field(default_factory=StoppingConfig)


_SECTIONS: dict[str, type] = {"training": TrainingConfig, "model": ModelConfig, "stopping": StoppingConfig}


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain nested dict (JSON-ready) of a config.

    >>> config_to_dict(Config())["training"]["batch_size"]
    64
    """
    return dataclasses.asdict(config)


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build and validate a Config from a nested dict; missing keys keep their defaults.

    >>> config_from_dict({"model": {"hidden_sizes": [16]}}).model.hidden_sizes
    [16]
    """
    if not isinstance(data, dict):
        raise MlplabError(f"a config must be a JSON object, got {type(data).__name__}",
                          hint='write {"training": {...}, "model": {...}}')
    config = Config()
    for section, values in data.items():
        if section not in _SECTIONS:
            raise MlplabError(f"unknown config section {section!r}", hint=f"use one of {', '.join(_SECTIONS)}")
        if not isinstance(values, dict):
            raise MlplabError(f"config section {section!r} must be an object, got {values!r}")
        for key, value in values.items():
            _set(config, section, key, value)
    validate(config)
    return config


def resolve_config(file: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Defaults, then a JSON file (if any), then `section.key=value` overrides; validated.

    >>> resolve_config(overrides=["training.learning_rate=1"]).training.learning_rate
    1.0
    """
    data: dict[str, Any] = {}
    if file is not None:
        path = Path(file)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise MlplabError(f"config file {path} not found", hint="check the --config path") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MlplabError(f"cannot read config file {path}: {exc}", hint="it must be a JSON object") from exc
    config = config_from_dict(data)
    for item in overrides:
        key, value = parse_override(item)
        section, name = key
        _set(config, section, name, value)
    validate(config)
    return config


def parse_override(item: str) -> tuple[tuple[str, str], Any]:
    """Split `training.batch_size=6` into (("training", "batch_size"), 6); the value is read as JSON when it
    parses (numbers, lists, true/false), else kept as a string.

    >>> parse_override("model.hidden_sizes=[16, 8]")
    (('model', 'hidden_sizes'), [16, 8])
    """
    if "=" not in item:
        raise MlplabError(f"override {item!r} has no '='", hint="write SECTION.KEY=VALUE, e.g. training.batch_size=6")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise MlplabError(f"override key {key!r} is not SECTION.KEY",
                          hint=f"sections: {', '.join(_SECTIONS)}; e.g. training.batch_size=6")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw.strip()
    return (parts[0], parts[1]), value


def _set(config: Config, section: str, key: str, value: Any) -> None:
    if section not in _SECTIONS:
        raise MlplabError(f"unknown config section {section!r}", hint=f"use one of {', '.join(_SECTIONS)}")
    target = getattr(config, section)
    fields = {f.name: f for f in dataclasses.fields(target)}
    if key not in fields:
        raise MlplabError(f"unknown config key {section}.{key}",
                          hint=f"{section} keys: {', '.join(fields)}")
    setattr(target, key, _coerce(f"{section}.{key}", value, getattr(type(target)(), key)))


def _coerce(name: str, value: Any, default: Any) -> Any:
    wrong = MlplabError(f"{name} must be {_kind(default)}, got {value!r}")
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise wrong
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise wrong
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise wrong
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise wrong
    if isinstance(default, list):
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return list(value)
        raise wrong
    raise AssertionError(f"no coercion for {name}")  # pragma: no cover


def _kind(default: Any) -> str:
    for cls, word in ((bool, "true or false"), (int, "an integer"), (float, "a number"), (str, "a string"),
                      (list, "a list of integers, e.g. [16]")):
        if isinstance(default, cls):
            return word
    return type(default).__name__  # pragma: no cover


def validate(config: Config) -> None:
    """Raise MlplabError naming the first bad value."""
    t, m, s = config.training, config.model, config.stopping
    for name, value in (("training.batch_size", t.batch_size), ("training.num_epochs", t.num_epochs),
                        ("training.test_batch_size", t.test_batch_size), ("model.input_size", m.input_size),
                        ("model.num_classes", m.num_classes), ("stopping.window", s.window),
                        ("stopping.patience", s.patience), ("stopping.up_strips", s.up_strips),
                        ("stopping.strip_length", s.strip_length)):
        if value <= 0:
            raise MlplabError(f"{name} must be positive, got {value}")
    if not (math.isfinite(t.learning_rate) and t.learning_rate > 0):
        raise MlplabError(f"training.learning_rate must be a positive number, got {t.learning_rate}")
    if not 0 <= m.dropout_rate < 1:
        raise MlplabError(f"model.dropout_rate must be in [0, 1), got {m.dropout_rate}",
                          hint="0 turns dropout off")
    if not m.hidden_sizes:
        raise MlplabError("model.hidden_sizes must not be empty", hint="e.g. model.hidden_sizes=[16]")
    if any(h <= 0 for h in m.hidden_sizes):
        raise MlplabError(f"model.hidden_sizes must be positive, got {m.hidden_sizes}")
    if m.num_classes < 2:
        raise MlplabError(f"model.num_classes must be at least 2, got {m.num_classes}")
    if not 0 <= t.validation_split < 1:
        raise MlplabError(f"training.validation_split must be in [0, 1), got {t.validation_split}",
                          hint="e.g. 0.1 holds out a tenth of the training set; 0 turns it off")
    for label, choice, choices in (("training.optimizer", t.optimizer, OPTIMIZERS),
                                   ("training.engine", t.engine, ENGINES), ("stopping.rule", s.rule, RULES)):
        if choice not in choices:
            raise MlplabError(f"{label} must be one of {', '.join(choices)}, got {choice!r}")
    if s.gl_alpha <= 0 or s.pq_alpha <= 0:
        raise MlplabError(f"stopping.gl_alpha and stopping.pq_alpha must be positive, got {s.gl_alpha}, "
                          f"{s.pq_alpha}")
