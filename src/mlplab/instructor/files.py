"""Instructor files on disk: variant folders with their keys, answer sheets (JSON or CSV), class reports.

Everything is computed in memory first and each file is written atomically (`mlplab.fsio`), so a bad input
stops before anything is written and an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

from mlplab.errors import MlplabError
from mlplab.fsio import atomic_write_bytes, atomic_write_json, atomic_write_text, ensure_dir, save_figure
from mlplab.instructor.check import ClassReport, answer_template, class_figure
from mlplab.instructor.key import AnswerKey, answer_key
from mlplab.instructor.render import key_latex, key_markdown
from mlplab.instructor.variants import Variant
from mlplab.twolayer.problem import Problem, load_problem

ANSWER_SUFFIXES = (".json", ".csv")
_INDEXED = re.compile(r"^(?P<name>[^\[\]]+)(?P<index>(\[\d+\])+)$")


def sheet_text(sheet: dict[str, Any]) -> str:
    """An answer sheet (or key) as JSON with one item per line, lists kept on their line.

    >>> print(sheet_text({"variant": "v001", "classes.relu-relu": [None, None]}))
    {
      "variant": "v001",
      "classes.relu-relu": [null, null]
    }
    """
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in sheet.items()]
    return "{\n" + ",\n".join(lines) + "\n}"


def build_key_pdf(key: AnswerKey, folder: Path) -> str:
    """Write folder/key.pdf with LaTeX when it is installed; returns a one-line note of what happened."""
    from mlplab.report.build import build_pdf, latex_tool

    if latex_tool() is None:
        return "key.pdf skipped: neither latexmk nor pdflatex is installed"
    with tempfile.TemporaryDirectory(prefix="mlplab-key-") as tmp:
        (Path(tmp) / "key.tex").write_text(key_latex(key))
        try:
            pdf = build_pdf(Path(tmp), "key")
        except MlplabError as exc:
            return f"key.pdf not built: {exc}"
        atomic_write_bytes(folder / "key.pdf", pdf.read_bytes())
    return f"built {folder / 'key.pdf'}"


def write_variants(variants: list[Variant], out_dir: Path, pdf: bool = True) -> tuple[list[Path], list[str]]:
    """Write out_dir/<id>/{problem.json, key.json, key.md, answers_template.json[, key.pdf]} and
    out_dir/variants.json; returns the paths written and notes (about key.pdf)."""
    keys = [answer_key(v.problem) for v in variants]  # compute everything before writing anything
    ensure_dir(out_dir)
    paths: list[Path] = []
    notes: list[str] = []
    for v, key in zip(variants, keys):
        folder = ensure_dir(out_dir / v.id)
        paths.append(atomic_write_text(folder / "problem.json", v.problem.to_text()))
        paths.append(atomic_write_text(folder / "key.json", sheet_text(key.rounded()) + "\n"))
        paths.append(atomic_write_text(folder / "key.md", key_markdown(key)))
        paths.append(atomic_write_text(folder / "answers_template.json", sheet_text(answer_template(v.problem)) + "\n"))
        if pdf:
            notes.append(build_key_pdf(key, folder))
    index = {"seed": variants[0].seed, "count": len(variants), "shape": {"n": variants[0].problem.n,
             "d": variants[0].problem.d, "h": variants[0].problem.h},
             "variants": [{"id": v.id, "index": v.index} for v in variants]}
    paths.append(atomic_write_json(out_dir / "variants.json", index))
    return paths, notes


def read_answers(path: Path) -> dict[str, Any]:
    """An answer sheet: a JSON object of item -> value, or a CSV of `name,value` rows (optional header row;
    `name[i]` / `name[i][j]` rows for single entries, 1-based; or a JSON list in the value cell)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise MlplabError(f"answer file {path} does not exist", hint="check the path") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise MlplabError(f"cannot read answer file {path}: {exc}", hint="check the file") from exc
    if path.suffix.lower() == ".csv":
        return _answers_from_csv(text, path)
    if path.suffix.lower() != ".json":
        raise MlplabError(f"answer file {path} is neither .json nor .csv", hint="save the answers as JSON or CSV")
    try:
        raw = json.loads(text, parse_float=Fraction, parse_int=Fraction)
    except json.JSONDecodeError as exc:
        raise MlplabError(f"answer file {path} is not valid JSON ({exc.msg} at line {exc.lineno})",
                          hint="fix the file; `mlplab check --template` shows the format") from exc
    if not isinstance(raw, dict):
        raise MlplabError(f"answer file {path} must hold a JSON object of item names to values",
                          hint="`mlplab check --template --problem FILE` shows the format")
    return {k: (str(v) if k in ("variant", "student") and v is not None else v) for k, v in raw.items()}


def _answers_from_csv(text: str, path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    entries: dict[str, dict[tuple[int, ...], str]] = {}
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise MlplabError(f"answer file {path} is not valid CSV ({exc})", hint="write rows `name,value`") from exc
    for line, row in enumerate(rows, start=1):
        if not row or all(not c.strip() for c in row) or (line == 1 and [c.strip() for c in row] == ["name", "value"]):
            continue
        if len(row) != 2:
            raise MlplabError(f"answer file {path}, line {line}: expected `name,value`, got {len(row)} cells",
                              hint="one item per row; write lists as entry rows name[i] or as a JSON list in quotes")
        name, value = row[0].strip(), row[1].strip()
        match = _INDEXED.match(name)
        if match:
            index = tuple(int(i) for i in re.findall(r"\d+", match["index"]))
            entries.setdefault(match["name"], {})[index] = value
        elif value.startswith("["):
            try:
                out[name] = json.loads(value, parse_float=Fraction, parse_int=Fraction)
            except json.JSONDecodeError as exc:
                raise MlplabError(f"answer file {path}, line {line}: {name}'s list is not valid JSON ({exc.msg})",
                                  hint='write e.g. "[0.5, 1.25]"') from exc
        else:
            out[name] = value
    for name, cells in entries.items():
        out[name] = _assemble(cells, path, name)
    return out


def _assemble(cells: dict[tuple[int, ...], str], path: Path, name: str) -> list[Any]:
    """Entry rows name[i] or name[i][j] (1-based) into a list or a list of rows; absent entries are None."""
    depth = {len(k) for k in cells}
    if len(depth) != 1 or min(i for k in cells for i in k) < 1:
        raise MlplabError(f"answer file {path}: the entries of {name} mix index depths or use index 0",
                          hint="use name[i] for a vector and name[i][j] for a matrix, counting from 1")
    if depth == {1}:
        return [cells.get((i,)) for i in range(1, max(k[0] for k in cells) + 1)]
    rows, cols = max(k[0] for k in cells), max(k[1] for k in cells)
    return [[cells.get((i, j)) for j in range(1, cols + 1)] for i in range(1, rows + 1)]


def read_class(folder: Path, variants_dir: Path | None = None, problem_file: Path | None = None
               ) -> list[tuple[str, Problem, dict[str, Any]]]:
    """Every answer file directly in `folder` (sorted by name) as (student id, problem, answers).

    The student id is the file name without suffix; the variant is the sheet's "variant" entry, else the
    student id. Its problem is variants_dir/<variant>/problem.json when that exists, else `problem_file`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MlplabError(f"class folder {folder} does not exist", hint="pass the folder of answer files")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in ANSWER_SUFFIXES)
    if not files:
        raise MlplabError(f"class folder {folder} holds no .json or .csv answer files",
                          hint="name each file after the student or variant id, e.g. v001-0a28.json")
    fallback = load_problem(problem_file) if problem_file is not None else None
    sheets = []
    for path in files:
        answers = read_answers(path)
        variant = str(answers.get("variant") or path.stem)
        candidate = variants_dir / variant / "problem.json" if variants_dir is not None else None
        if candidate is not None and candidate.is_file():
            problem = load_problem(candidate)
        elif fallback is not None:
            problem = fallback
        else:
            raise MlplabError(f"no problem for {path.name}: variant {variant!r} is not a folder of "
                              f"{variants_dir or '--variants'}", hint="pass --variants DIR (the `mlplab variants` "
                                                                       "folder) or --problem FILE")
        sheets.append((path.stem, problem, answers))
    return sheets


def write_class_report(report: ClassReport, out_dir: Path) -> list[Path]:
    """class.csv (items x students, last row the scores), class.json (every verdict) and mistakes.png."""
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["item", *report.students])
    writer.writerows(report.grid())
    ensure_dir(out_dir)
    paths = [atomic_write_text(out_dir / "class.csv", buffer.getvalue()),
             atomic_write_json(out_dir / "class.json",
                               {"mistake_counts": report.mistake_counts(),
                                "students": {s: r.to_dict() for s, r in zip(report.students, report.results)}})]
    fig = class_figure(report)
    try:
        paths += save_figure(fig, out_dir, "mistakes", formats=("png",))
    finally:
        plt.close(fig)
    return paths
