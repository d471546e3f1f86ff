"""The MNIST config: the assignment's values, overrides by file and --set, and clear errors for bad values."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from mlplab.cli import main
from mlplab.errors import MlplabError
from mlplab.mnist.config import (
    MODEL_CONFIG,
    STOPPING_CONFIG,
    TRAINING_CONFIG,
    Config,
    ModelConfig,
    StoppingConfig,
    TrainingConfig,
    config_from_dict,
    config_to_dict,
    parse_override,
    resolve_config,
)


def test_seed_values_exactly():
    # Typed in from the assignment's section 3.1 and 3.2 listings.
    seed_training = {"batch_size": 64, "learning_rate": 0.001, "num_epochs": 100, "test_batch_size": 1000}
    seed_model = {"input_size": 784, "hidden_sizes": [512, 256, 128], "num_classes": 10, "dropout_rate": 0.2}
    assert {k: TRAINING_CONFIG[k] for k in seed_training} == seed_training
    assert {k: MODEL_CONFIG[k] for k in seed_model} == seed_model
    assert list(TRAINING_CONFIG)[:4] == list(seed_training) and list(MODEL_CONFIG)[:4] == list(seed_model)


def test_dataclass_defaults_equal_the_dicts():
    assert asdict(TrainingConfig()) == TRAINING_CONFIG
    assert asdict(ModelConfig()) == MODEL_CONFIG
    assert asdict(StoppingConfig()) == STOPPING_CONFIG
    assert TRAINING_CONFIG["optimizer"] == "adam" and MODEL_CONFIG["softmax_output"] is False
    assert TRAINING_CONFIG["validation_split"] == 0.0 and STOPPING_CONFIG["enabled"] is False


def test_overrides_and_int_for_float():
    cfg = resolve_config(overrides=["training.batch_size=6", "model.hidden_sizes=[16]", "training.learning_rate=1",
                                    "model.dropout_rate=0", "stopping.enabled=true", 'training.optimizer="sgd"',
                                    "training.device=cpu"])
    assert cfg.training.batch_size == 6 and cfg.model.hidden_sizes == [16]
    assert cfg.training.learning_rate == 1.0 and isinstance(cfg.training.learning_rate, float)
    assert cfg.model.dropout_rate == 0.0 and cfg.stopping.enabled is True
    assert cfg.training.optimizer == "sgd" and cfg.training.device == "cpu"
    assert parse_override("model.hidden_sizes=[16]") == (("model", "hidden_sizes"), [16])


def test_file_then_overrides(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"training": {"batch_size": 6400, "num_epochs": 3}, "model": {"hidden_sizes": [16]}}))
    cfg = resolve_config(path, ["training.num_epochs=5"])
    assert (cfg.training.batch_size, cfg.training.num_epochs, cfg.model.hidden_sizes) == (6400, 5, [16])
    assert cfg.training.learning_rate == 0.001  # untouched keys keep the assignment's values


def test_round_trip():
    cfg = resolve_config(overrides=["model.hidden_sizes=[8, 4]", "training.validation_split=0.1"])
    again = config_from_dict(json.loads(json.dumps(config_to_dict(cfg))))
    assert again == cfg
    assert config_from_dict({}) == Config()


@pytest.mark.parametrize("override, words", [
    ("training.batch_size=0", "training.batch_size must be positive"),
    ("training.num_epochs=-1", "training.num_epochs must be positive"),
    ("training.test_batch_size=0", "test_batch_size must be positive"),
    ("training.learning_rate=0", "learning_rate must be a positive number"),
    ("training.learning_rate=-0.1", "learning_rate must be a positive number"),
    ("training.learning_rate=NaN", "learning_rate must be a positive number"),
    ("model.dropout_rate=1", "dropout_rate must be in [0, 1)"),
    ("model.dropout_rate=-0.1", "dropout_rate must be in [0, 1)"),
    ("model.hidden_sizes=[]", "hidden_sizes must not be empty"),
    ("model.hidden_sizes=[16, 0]", "hidden_sizes must be positive"),
    ("model.hidden_sizes=16", "hidden_sizes must be a list of integers"),
    ("model.input_size=0", "input_size must be positive"),
    ("training.batch_size=6.5", "batch_size must be an integer"),
    ("training.batch_size=true", "batch_size must be an integer"),
    ("training.learning_rate=fast", "learning_rate must be a number"),
    ("training.optimizer=rmsprop", "optimizer must be one of adam, sgd"),
    ("training.validation_split=1", "validation_split must be in [0, 1)"),
    ("stopping.rule=magic", "stopping.rule must be one of"),
    ("training.batchsize=6", "unknown config key training.batchsize"),
    ("optim.lr=1", "unknown config section 'optim'"),
    ("batch_size=6", "is not SECTION.KEY"),
    ("training.batch_size", "has no '='"),
])
def test_bad_values_raise_clear_errors(override, words):
    with pytest.raises(MlplabError) as err:
        resolve_config(overrides=[override])
    assert words in str(err.value)


def test_bad_files(tmp_path):
    with pytest.raises(MlplabError, match="not found"):
        resolve_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(MlplabError, match="cannot read config file"):
        resolve_config(bad)
    bad.write_text('{"training": {"lr": 1}}')
    with pytest.raises(MlplabError, match=r"unknown config key training\.lr"):
        resolve_config(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(MlplabError, match="must be a JSON object"):
        resolve_config(bad)


def test_cli_bad_set_is_one_line_exit_2(capsys):
    assert main(["mnist", "train", "--set", "training.batch_size=0", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mlplab: error: training.batch_size must be positive, got 0"]
