"""One name per idea on the command line: the same flag is spelt, defaulted and explained alike in every command."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from mlplab.cli import build_parser, main
from mlplab.cli.common import DEVICES


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> dict[str, argparse.ArgumentParser]:
    """Every leaf command's parser by its words ("byhand", "mnist train", ...)."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= _commands(sub, (*prefix, name))
    if prefix and not found:
        found[" ".join(prefix)] = parser
    return found


COMMANDS = _commands(build_parser())


def _flag(command: str, option: str) -> argparse.Action | None:
    return next((a for a in COMMANDS[command]._actions if option in a.option_strings), None)


def _with(option: str) -> dict[str, argparse.Action]:
    return {name: a for name in COMMANDS if (a := _flag(name, option)) is not None}


def test_every_pair_choice_is_activations_with_pair_as_its_alias():
    flags = _with("--activations")
    assert sorted(flags) == ["byhand", "descent", "draw", "gradients", "losses", "stream"]
    for name, action in flags.items():
        assert action.option_strings == ["--activations", "--pair"], name
        assert action.dest == "activations" and action.metavar == "S1,S2", name
    assert sorted(_with("--pair")) == sorted(flags)
    help_text = COMMANDS["byhand"].format_help()
    assert "--activations S1,S2, --pair S1,S2" in help_text


def test_pair_and_activations_give_the_same_output(capsys):
    assert main(["byhand", "--pair", "relu,sigmoid"]) == 0
    by_pair = capsys.readouterr().out
    assert main(["byhand", "--activations", "relu,sigmoid"]) == 0
    assert capsys.readouterr().out == by_pair and "(σ1, σ2) = (σ_ReLU, σ_sigm)" in by_pair
    assert main(["losses", "--pair", "sigmoid,sigmoid", "--activations", "relu,relu"]) == 0  # append, either name
    out = capsys.readouterr().out
    assert "(sigmoid, sigmoid)" in out and "(relu, relu)" in out


def test_shared_flags_are_declared_once():
    for name, action in _with("--data-dir").items():
        assert (action.default, action.metavar, action.type) == (None, "DIR", Path), name
        assert "$MLPLAB_DATA" in action.help, name
    assert {"data fetch", "data verify", "data path", "mnist train", "mnist experiment", "mnist sweep",
            "mnist compare", "reproduce"} <= set(_with("--data-dir"))
    for name, action in _with("--problem").items():
        assert (action.default, action.metavar, action.type) == (None, "FILE", Path), name
        assert action.help.endswith("default: the assignment's problem"), name
    assert "reproduce" in _with("--problem") and "stream" in _with("--problem")
    for name, action in _with("--out").items():
        if action.help == argparse.SUPPRESS:  # compare's old name for --from
            continue
        assert (action.metavar, action.type) == ("DIR", Path), name
    assert _with("--out").keys() >= {"reproduce", "stream", "draw", "section1", "section2", "variants"}


def test_device_has_one_meaning_and_each_command_names_its_default():
    flags = _with("--device")
    assert sorted(flags) == ["mnist experiment", "mnist sweep", "mnist train", "stream"]
    for name, action in flags.items():
        assert action.metavar == "D" and action.help.startswith(DEVICES + "; default: "), name
    assert [flags[n].default for n in ("mnist experiment", "mnist sweep", "mnist train")] == [None] * 3
    assert flags["stream"].default == "cpu"


def test_json_is_spelt_format_json_everywhere():
    assert not _with("--json")
    for name in ("mnist train", "mnist experiment", "mnist sweep", "stream", "check", "byhand", "mnist compare"):
        assert "json" in _flag(name, "--format").choices, name
    assert _flag("stream", "--format").choices == ("text", "json")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["stream", "synthetic:10", "--activations", "relu,relu", "--json"])


def test_stream_format_json_prints_the_summary(capsys):
    assert main(["stream", "synthetic:2000", "--activations", "relu,sigmoid", "--no-progress",
                 "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"] == 2000


def test_reproduce_out_holds_results_and_report(tmp_path, capsys):
    base = ["reproduce", "--tiny", "--no-pdf", "--no-fetch", "--no-progress"]
    assert main([*base, "--plan", "--out", str(tmp_path / "all")]) == 0
    err = capsys.readouterr().err
    assert f"results in {tmp_path / 'all' / 'results'}, report in {tmp_path / 'all' / 'report'}" in err
    assert not (tmp_path / "all").exists()
    assert main([*base, "--plan", "--out", str(tmp_path / "all"), "--report", str(tmp_path / "elsewhere")]) == 0
    assert f"results in {tmp_path / 'all' / 'results'}, report in {tmp_path / 'elsewhere'}" in capsys.readouterr().err
    assert main([*base, "--plan"]) == 0
    assert "results in results, report in report" in capsys.readouterr().err

    assert main([*base, "--out", str(tmp_path / "all"), "--only", "section1", "report"]) == 0
    capsys.readouterr()
    assert (tmp_path / "all" / "results" / "section1" / "table1.txt").is_file()
    assert (tmp_path / "all" / "report" / "report.tex").is_file()


def test_compare_reads_a_sweep_folder_given_by_from(tmp_path, capsys):
    missing = tmp_path / "experiments-epochs-2"
    assert main(["mnist", "compare", "--from", str(missing)]) == 2
    by_from = capsys.readouterr().err
    assert str(missing) in by_from
    assert main(["mnist", "compare", "--out", str(missing)]) == 2  # the old name still reads the same folder
    assert capsys.readouterr().err == by_from
    with pytest.raises(SystemExit):  # --epochs trains N epochs elsewhere; compare no longer takes it
        build_parser().parse_args(["mnist", "compare", "--epochs", "2"])
    assert "--from DIR" in COMMANDS["mnist compare"].format_help()
    assert "--out DIR" not in COMMANDS["mnist compare"].format_help()
