"""The README's Python example and its command list stay true to the code."""

from __future__ import annotations

import doctest
import re
import shlex
from pathlib import Path

from mlplab.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs_as_shown():
    blocks = [b.split("```", 1)[0] for b in README.read_text().split("```python\n")[1:]]
    assert blocks, "README has no Python example"
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for i, block in enumerate(blocks):
        runner.run(doctest.DocTestParser().get_doctest(block, {}, f"README block {i + 1}", str(README), 0))
    result = runner.summarize(verbose=False)
    assert result.attempted >= 3 and result.failed == 0


def test_readme_lists_every_command():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    text = README.read_text()
    missing = [name for name in commands if f"    {name}" not in text]
    assert not missing, f"README's command list lacks {missing}"


def test_readme_quotes_the_real_help(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # argparse wraps at the terminal's width; the README is quoted unwrapped
    text = README.read_text()
    start = text.index("$ mlplab --help\n") + len("$ mlplab --help\n")
    assert text[start:text.index("```", start)] == build_parser().format_help()


def test_readme_command_lines_parse(capsys):
    """Each `$ mlplab ...` line of the README uses only flags and values the parser accepts."""
    lines = [line[len("$ mlplab "):] for line in README.read_text().splitlines() if line.startswith("$ mlplab ")]
    assert len(lines) >= 15
    parser = build_parser()
    for line in lines:
        words = shlex.split(re.split(r"\s[|#>]|\s2>", line)[0])
        try:
            parser.parse_args(words)
        except SystemExit as exc:  # --help exits 0 after printing; a bad flag exits 2
            if exc.code == 0:
                continue
            raise AssertionError(f"README: `mlplab {line}` does not parse") from exc
