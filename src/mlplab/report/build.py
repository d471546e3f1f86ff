"""Building `report.pdf` with latexmk (or pdflatex + bibtex when latexmk is missing).

The build runs in a temporary copy of the report folder, and the finished PDF is moved into place
atomically: a failed build never leaves a half-written or stale-looking `report.pdf`. When LaTeX fails, the
error is one line naming the log file, which is kept as `report/build/report.log`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from mlplab.errors import MlplabError
from mlplab.fsio import atomic_write_bytes, ensure_dir

TIMEOUT_S = 600


def latex_tool() -> str | None:
    """`latexmk` or `pdflatex` when one is on the PATH (latexmk preferred), else None."""
    for tool in ("latexmk", "pdflatex"):
        if shutil.which(tool):
            return tool
    return None


def build_pdf(report_dir: Path, main: str = "report") -> Path:
    """Compile `report_dir/<main>.tex` into `report_dir/<main>.pdf`; raises `MlplabError` on failure."""
    report_dir = Path(report_dir)
    tool = latex_tool()
    if tool is None:
        raise MlplabError("neither latexmk nor pdflatex is installed, so report.pdf was not built",
                          hint="install TeX (Debian: apt-get install texlive-latex-recommended latexmk), "
                               f"or upload {report_dir} to Overleaf")
    if not (report_dir / f"{main}.tex").is_file():
        raise MlplabError(f"{report_dir / (main + '.tex')} does not exist", hint="write the report first")
    log_dir = ensure_dir(report_dir / "build")
    with tempfile.TemporaryDirectory(prefix="mlplab-latex-") as tmp:
        work = Path(tmp) / "report"
        shutil.copytree(report_dir, work, ignore=shutil.ignore_patterns("build", f"{main}.pdf"))
        ok, detail = _compile(tool, work, main)
        log = work / f"{main}.log"
        if log.is_file():
            shutil.copyfile(log, log_dir / f"{main}.log")
        pdf = work / f"{main}.pdf"
        if not ok or not pdf.is_file():
            where = log_dir / f"{main}.log"
            raise MlplabError(f"LaTeX failed to build {main}.pdf ({detail})",
                              hint=f"see {where}" + (f", first error: {_first_error(where)}" if where.is_file()
                                                     else ""))
        return atomic_write_bytes(report_dir / f"{main}.pdf", pdf.read_bytes())


def _compile(tool: str, work: Path, main: str) -> tuple[bool, str]:
    env = {**os.environ, "TEXINPUTS": f"{work}{os.pathsep}", "max_print_line": "10000"}
    if tool == "latexmk":
        commands = [["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error",
                     f"{main}.tex"]]
    else:
        pdflatex = ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error", f"{main}.tex"]
        commands = [pdflatex, *([["bibtex", main]] if shutil.which("bibtex") else []), pdflatex, pdflatex]
    for cmd in commands:
        try:
            proc = subprocess.run(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, timeout=TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            return False, f"{cmd[0]} took longer than {TIMEOUT_S} s"
        if proc.returncode != 0 and cmd[0] != "bibtex":
            return False, f"{cmd[0]} exited with status {proc.returncode}"
    return True, "ok"


def _first_error(log: Path) -> str:
    try:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("!") or re.match(r"^\S+:\d+: ", line):
                return line.strip()[:200]
    except OSError:
        pass
    return "none found in the log"


def pdf_text(pdf: Path) -> str:
    """The text of a PDF via `pdftotext` (poppler-utils); raises `MlplabError` when it is not installed."""
    if shutil.which("pdftotext") is None:
        raise MlplabError("pdftotext is not installed", hint="apt-get install poppler-utils")
    proc = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, check=False, timeout=120)
    if proc.returncode != 0:
        raise MlplabError(f"pdftotext could not read {pdf}: {proc.stderr.decode(errors='replace').strip()}",
                          hint="check that the PDF is complete")
    return proc.stdout.decode(errors="replace")
