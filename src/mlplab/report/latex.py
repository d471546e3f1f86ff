"""Writing `report/` as a LaTeX project: preamble, material gathered from `results/`, code listings.

`Material` copies what the sections wrote (tables as booktabs `.tex`, figures as PDF, LaTeX fragments) into the
report folder, so the folder compiles on its own (upload it to Overleaf as a zip), and returns the LaTeX that
inputs it, or a clearly marked "not yet produced" box when the file is not there. Every copied table is
listed in `tables/manifest.json` beside the JSON it came from, which is how the tests check that each number
in the report equals the number in `results/`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mlplab.fsio import atomic_write_bytes, atomic_write_json, atomic_write_text, ensure_dir
from mlplab.tables import latex_escape

# Characters that occur in mlplab's docs and sources, as pdflatex-safe LaTeX (anything else becomes "?").
UNICODE_LATEX = {
    "σ": r"$\sigma$", "η": r"$\eta$", "θ": r"$\theta$", "∂": r"$\partial$", "∇": r"$\nabla$", "μ": r"$\mu$",
    "µ": r"$\mu$", "α": r"$\alpha$", "β": r"$\beta$", "γ": r"$\gamma$", "δ": r"$\delta$", "Δ": r"$\Delta$",
    "ε": r"$\varepsilon$", "λ": r"$\lambda$", "π": r"$\pi$", "Σ": r"$\Sigma$", "τ": r"$\tau$", "ŷ": r"$\hat y$",
    "×": r"$\times$", "·": r"$\cdot$", "⋅": r"$\cdot$", "→": r"$\to$", "←": r"$\leftarrow$", "↦": r"$\mapsto$",
    "⇒": r"$\Rightarrow$", "≤": r"$\le$", "≥": r"$\ge$", "≈": r"$\approx$", "≠": r"$\ne$", "±": r"$\pm$",
    "∈": r"$\in$", "∞": r"$\infty$", "√": r"$\surd$", "∑": r"$\sum$", "−": r"$-$", "…": r"\ldots{}",
    "–": "--", "—": "---", "‘": "`", "’": "'", "“": "``", "”": "''", "°": r"$^\circ$", "²": r"$^2$",
    "³": r"$^3$", "¹": r"$^1$", "⁰": r"$^0$", "⁴": r"$^4$", "⁵": r"$^5$", "⁶": r"$^6$", "⁷": r"$^7$",
    "⁸": r"$^8$", "⁹": r"$^9$", "⁻": r"$^-$", "₁": r"$_1$", "₂": r"$_2$", "ä": r"\"a", "ö": r"\"o", "ü": r"\"u",
    "é": r"\'e", "è": r"\`e", "ß": r"\ss{}", "✓": r"$\checkmark$", "✗": "x", "│": "|", "─": "-", "█": r"\#",
    "▏": "|", " ": "~", "≡": r"$\equiv$", "⊙": r"$\odot$", "ℝ": r"$\mathbb{R}$", "∘": r"$\circ$",
}

PREAMBLE = r"""\documentclass[11pt,a4paper]{article}
\usepackage[T1]{fontenc}
\usepackage[utf8]{inputenc}
\usepackage{lmodern}
\usepackage[margin=2.3cm]{geometry}
\usepackage{amsmath,amssymb}
\usepackage{graphicx}
\usepackage{booktabs}
\usepackage{array}
\usepackage{float}
\usepackage{caption}
\usepackage{xcolor}
\usepackage{listings}
\usepackage[numbers]{natbib}
\usepackage[hidelinks]{hyperref}
\lstset{basicstyle=\ttfamily\scriptsize, breaklines=true, columns=fullflexible, keepspaces=true,
  showstringspaces=false, numbers=left, numberstyle=\tiny\color{gray}, frame=single, rulecolor=\color{gray},
  keywordstyle=\bfseries, commentstyle=\itshape\color{black!60}, escapeinside={(*@}{@*)}}
% The answer to a numbered item, written from this run's numbers.
\newcommand{\answer}[1]{\par\noindent\textbf{Answer.} #1\par}
% A box for material that the pipeline has not produced (yet).
\newcommand{\notproduced}[1]{\par\smallskip\noindent\fcolorbox{red!60!black}{red!4}{\parbox{0.96\linewidth}{%
  \textbf{\color{red!60!black}Not yet produced.} #1}}\par\smallskip}
\newcommand{\facts}[1]{\par\noindent\textbf{Computed facts.} #1\par}
% Tables wider than the line are scaled down to fit, but never below 80 % (small type at 80 % is 8 pt).
\newsavebox{\fitbox}
\newenvironment{fitwidth}{\begin{lrbox}{\fitbox}}{\end{lrbox}%
  \ifdim\wd\fitbox>\linewidth
    \ifdim0.8\wd\fitbox>\linewidth\scalebox{0.8}{\usebox{\fitbox}}\else\resizebox{\linewidth}{!}{\usebox{\fitbox}}\fi
  \else\usebox{\fitbox}\fi}
\emergencystretch=2em
\setlength{\parindent}{0pt}
\setlength{\parskip}{4pt}
"""


def unicode_to_latex(text: str, math: bool = False) -> str:
    """Replace non-ASCII characters by LaTeX that pdflatex understands (unknown ones by '?').

    `math=True` is for text already inside `$...$`: the replacement loses its own dollars.

    >>> unicode_to_latex("σ1 → 0.5"), unicode_to_latex("σ_1", math=True)
    ('$\\\\sigma$1 $\\\\to$ 0.5', '{\\\\sigma}_1')
    """
    def one(ch: str) -> str:
        if ord(ch) < 128:
            return ch
        value = UNICODE_LATEX.get(ch, "?")
        if math and len(value) > 2 and value.startswith("$") and value.endswith("$"):
            return "{" + value[1:-1] + "}"
        return value

    return "".join(one(ch) for ch in text)


def tex(text: str) -> str:
    """Plain text as LaTeX: special characters escaped, Unicode mapped.

    >>> tex("a_1 ≥ 50%")
    'a\\\\_1 $\\\\ge$ 50\\\\%'
    """
    return unicode_to_latex(latex_escape(text))


def fmt_num(value: Any, decimals: int = 4) -> str:
    """A number for running text (math mode), or a dash.

    >>> fmt_num(0.123456), fmt_num(None), fmt_num(3), fmt_num(2.5e-07)
    ('$0.1235$', '--', '$3$', '$2.5\\\\times 10^{-7}$')
    """
    if value is None:
        return "--"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"${value}$"
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return tex(str(value))
        if value != 0 and (abs(value) < 10 ** -(decimals - 1) or abs(value) >= 1e6):
            mant, exp = f"{value:.2e}".split("e")
            return f"${float(mant):g}\\times 10^{{{int(exp)}}}$"
        return f"${value:.{decimals}f}$"
    return tex(str(value))


class Material:
    """Gathers files from `results_dir` into `report_dir` and returns LaTeX that shows them."""

    def __init__(self, results_dir: Path, report_dir: Path) -> None:
        self.results = Path(results_dir)
        self.report = Path(report_dir)
        self.manifest: list[dict[str, str]] = []
        self.missing: list[str] = []
        self.used: list[str] = []

    def find(self, rel: str | Iterable[str]) -> Path | None:
        """The first existing file among `rel` (paths or glob patterns relative to the results folder)."""
        for pattern in [rel] if isinstance(rel, str) else rel:
            hits = sorted(self.results.glob(pattern))
            if hits:
                return hits[0]
        return None

    def json(self, rel: str | Iterable[str]) -> Any:
        path = self.find(rel)
        if path is None:
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def not_produced(self, what: str, how: str) -> str:
        self.missing.append(what)
        return f"\\notproduced{{{tex(what)} Run \\texttt{{{tex(how)}}} to produce it.}}\n"

    def table(self, rel: str | Iterable[str], what: str, how: str, label_suffix: str = "",
              caption_note: str = "", colsep: float = 3.0) -> str:
        """`\\input` of a booktabs table written by a section (its `.tex`, beside a `.json` of the same stem).

        `label_suffix` makes the table's `\\label` unique where two results files use the same one;
        `caption_note` is appended to its caption (e.g. the number of epochs the runs trained)."""
        src = self.find(rel)
        if src is None:
            return self.not_produced(what, how)

        def transform(text: str) -> str:
            if caption_note:
                text = re.sub(r"\\caption\{(.*)\}", lambda mm: f"\\caption{{{mm.group(1)}; {caption_note}}}", text)
            if label_suffix:
                text = re.sub(r"\\label\{([^}]*)\}", lambda mm: f"\\label{{{mm.group(1)}-{label_suffix}}}", text)
            return _fit_tables(text)

        dest = self._copy(src, "tables", transform=transform)
        source_json = src.with_suffix(".json")
        if source_json.is_file():
            self.manifest.append({"tex": dest.relative_to(self.report).as_posix(),
                                  "json": source_json.relative_to(self.results).as_posix()})
        # Smaller type and padding: some tables carry long text columns (verdict reasons, errata).
        path = dest.relative_to(self.report).with_suffix("").as_posix()
        return "{\\small\\setlength{\\tabcolsep}{" + f"{colsep:g}" + "pt}\\input{" + path + "}}\n"

    def table_part(self, rel: str, label_part: str, what: str, how: str, caption_note: str = "") -> str:
        """One table out of a file holding several: the table whose `\\label` contains `label_part`.

        The chunk and the matching entry of the JSON beside it (same position) are saved as a pair under
        `results/report-tables/`, so the manifest check still pairs every report table with its numbers.
        """
        src = self.find(rel)
        data = self.json(Path(rel).with_suffix(".json").as_posix()) if src is not None else None
        if src is None or not isinstance(data, dict):
            return self.not_produced(what, how)
        chunks = re.findall(r"\\begin\{table\}.*?\\end\{table\}", src.read_text(encoding="utf-8"), flags=re.S)
        entries = list(data.values())
        for k, chunk in enumerate(chunks):
            label = re.search(r"\\label\{([^}]*)\}", chunk)
            if label and label_part in label.group(1) and k < len(entries):
                stem = f"{src.stem}-{label_part}"
                folder = ensure_dir(self.results / "report-tables")
                atomic_write_text(folder / f"{stem}.tex", chunk + "\n")
                atomic_write_json(folder / f"{stem}.json", {str(k): entries[k]})
                return self.table(f"report-tables/{stem}.tex", what, how, caption_note=caption_note)
        return self.not_produced(what, how)

    def fragment(self, rel: str | Iterable[str], what: str, how: str, demote: bool = False) -> str:
        """`\\input` of a LaTeX fragment (a derivation); `demote` turns its \\subsection into \\paragraph."""
        src = self.find(rel)
        if src is None:
            return self.not_produced(what, how)
        dest = self._copy(src, "fragments")
        path = dest.relative_to(self.report).with_suffix("").as_posix()
        return f"{{\\let\\subsection\\paragraph\\input{{{path}}}}}\n" if demote else f"\\input{{{path}}}\n"

    def figure(self, rel: str | Iterable[str], caption: str, what: str, how: str, width: str = "0.85") -> str:
        """A figure from a PDF written by a section."""
        src = self.find(rel)
        if src is None:
            return self.not_produced(what, how)
        dest = self._copy(src, "figures")
        return ("\\begin{figure}[H]\n\\centering\n"
                f"\\includegraphics[width={width}\\linewidth]{{{dest.relative_to(self.report).as_posix()}}}\n"
                f"\\caption{{{caption}}}\n\\end{{figure}}\n")

    def write_table(self, table: Any, stem: str, subdir: str = "report-tables") -> str:
        """Write a `Table` built by the report itself as `.json` + `.tex` under results/, then input it."""
        from mlplab.tables import render_tables

        folder = ensure_dir(self.results / subdir)
        atomic_write_text(folder / f"{stem}.json", render_tables([table], "json") + "\n")
        atomic_write_text(folder / f"{stem}.tex", render_tables([table], "latex") + "\n")
        return self.table(f"{subdir}/{stem}.tex", table.title, "mlplab reproduce")

    def _copy(self, src: Path, kind: str, transform: Callable[[str], str] | None = None) -> Path:
        rel = src.relative_to(self.results)
        name = "-".join(rel.parts)
        dest = self.report / kind / name
        if transform is None:
            atomic_write_bytes(dest, src.read_bytes())
        else:
            atomic_write_text(dest, transform(src.read_text(encoding="utf-8")))
        self.used.append(rel.as_posix())
        return dest

    def save_manifest(self) -> None:
        atomic_write_json(self.report / "tables" / "manifest.json", {"results": str(self.results.resolve()),
                                                                      "tables": self.manifest})


def _fit_tables(text: str) -> str:
    # Place each table where it is input ([H]) and shrink it to the line width when it is wider.
    text = re.sub(r"\\begin\{table\}(\[[a-zA-Z!]*\])?", lambda _m: "\\begin{table}[H]", text)
    text = text.replace("\\begin{tabular}", "\\begin{fitwidth}\\begin{tabular}")
    # A row starting with "[" right after \\\\ or \\midrule would be read as their optional argument.
    text = re.sub(r"^\[", "{}[", text, flags=re.M)
    return text.replace("\\end{tabular}", "\\end{tabular}\\end{fitwidth}")


def listing_source(text: str) -> str:
    """Source code prepared for `listings` under pdflatex: non-ASCII characters become escaped LaTeX.

    >>> listing_source("x = 1  # σ1")
    'x = 1  # (*@$\\\\sigma$@*)1'
    """
    def repl(match: re.Match[str]) -> str:
        return "(*@" + unicode_to_latex(match.group(0)) + "@*)"

    return re.sub(r"[^\x00-\x7f]+", repl, text.replace("(*@", "( *@"))


def markdown_to_latex(md: str) -> str:
    """A small Markdown subset (headings, paragraphs, lists, code, bold, pipe tables) as LaTeX.

    >>> print(markdown_to_latex("## Title\\n\\nSome `code` and **bold**.\\n\\n- one\\n- two"))
    \\subsubsection*{Title}
    <BLANKLINE>
    Some \\texttt{code} and \\textbf{bold}.
    <BLANKLINE>
    \\begin{itemize}
    \\item one
    \\item two
    \\end{itemize}
    """
    out: list[str] = []
    lines = _join_continuations(md.splitlines())
    i = 0
    in_list = False
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            block = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                block.append(lines[i])
                i += 1
            out += ["\\begin{lstlisting}[numbers=none]", listing_source("\n".join(block)), "\\end{lstlisting}"]
            i += 1
            continue
        is_item = bool(re.match(r"^\s*([-*]|\d+\.)\s+", line))
        if in_list and not is_item and not (stripped and line.startswith("  ")):
            out.append("\\end{itemize}")
            in_list = False
        if stripped.startswith("|") and i + 1 < len(lines) and re.match(r"^\s*\|[\s:|-]+\|\s*$", lines[i + 1]):
            rows = [stripped]
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(lines[i].strip())
                i += 1
            out.append(_md_table(rows))
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        if heading:
            level = len(heading.group(1))
            cmd = "subsubsection*" if level <= 2 else "paragraph"
            out.append(f"\\{cmd}{{{_inline(heading.group(2))}}}")
        elif is_item:
            if not in_list:
                out.append("\\begin{itemize}")
                in_list = True
            out.append("\\item " + _inline(re.sub(r"^\s*([-*]|\d+\.)\s+", "", line)))
        else:
            out.append(_inline(stripped))
        i += 1
    if in_list:
        out.append("\\end{itemize}")
    return "\n".join(out)


def _join_continuations(lines: list[str]) -> list[str]:
    # A paragraph or list item wrapped over several lines becomes one line, so **bold** spanning a line break
    # is still converted; code blocks, tables, headings and blank lines stay as they are.
    out: list[str] = []
    in_code = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("```"):
            in_code = not in_code
            out.append(line)
            continue
        starts_block = (not stripped or stripped.startswith(("#", "|")) or in_code
                        or bool(re.match(r"^\s*([-*]|\d+\.)\s+", line)))
        prev = out[-1].strip() if out else ""
        joinable = prev and not prev.startswith(("#", "|", "```")) and not in_code
        if not starts_block and joinable:
            out[-1] = out[-1].rstrip() + " " + stripped
        else:
            out.append(line)
    return out


def _md_table(rows: list[str]) -> str:
    cells = [[c.strip() for c in r.strip("|").split("|")] for r in rows]
    ncol = max(len(r) for r in cells)
    body = [" & ".join(_inline(c) for c in r + [""] * (ncol - len(r))) + " \\\\" for r in cells]
    return "\n".join(["\\begin{center}\\small", f"\\begin{{tabular}}{{{'l' * ncol}}}", "\\toprule", body[0],
                      "\\midrule", *body[1:], "\\bottomrule", "\\end{tabular}", "\\end{center}"])


def _inline(text: str) -> str:
    # Code spans first (verbatim), then math spans ($...$ kept as is), then bold/italic on escaped text.
    # Bold may enclose code spans, so its markers become a placeholder before the split and braces after it.
    text = text.replace("**", "\x01")
    parts = re.split(r"(`[^`]*`|\$[^$]+\$)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) >= 2:  # long identifiers may break at "_"
            out.append("\\texttt{" + tex(part[1:-1]).replace("\\_", "\\_\\allowbreak{}") + "}")
        elif part.startswith("$") and part.endswith("$") and len(part) >= 2:
            out.append(unicode_to_latex(part, math=True))
        else:
            escaped = tex(part)
            escaped = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"\\emph{\1}", escaped)
            out.append(escaped)
    joined = "".join(out)
    if joined.count("\x01") % 2:
        return joined.replace("\x01", "**")
    pieces = joined.split("\x01")
    return "".join(p if k % 2 == 0 else "\\textbf{" + p + "}" for k, p in enumerate(pieces))
