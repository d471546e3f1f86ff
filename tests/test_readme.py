"""The README's Python example and its command list stay true to the code."""

from __future__ import annotations

import doctest
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
