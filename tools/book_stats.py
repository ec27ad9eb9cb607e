"""What each chapter puts on the page: words of prose, visible checks, source dumps, figures.

    python tools/book_stats.py                 # the working tree
    python tools/book_stats.py --base 03de41c  # and a git revision beside it, with the change

A chapter is a notebook of book/ (intro.md counts as prose only). The columns:

- words: words of the markdown cells, without code blocks, math, directive lines and HTML
  comments (a glue reference counts as one word; the prose inside a directive, such as an
  admonition, counts);
- checks: code cells that assert (``assert``, ``assert_allclose``, ``assert_close``, ...) and
  whose input shows on the page (no ``hide-cell``, ``hide-input``, ``remove-cell`` or
  ``remove-input`` tag);
- dumps: code cells that print source (``inspect.getsource`` or a file's text) and show more
  than 15 lines of it;
- figures: code cells with an image among their outputs (hidden ones too);
- wide: lines over 90 characters among the shown code (code cells and the markdown's code
  blocks) and the stored text outputs.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOOK = Path("book")
HIDDEN_INPUT = {"hide-cell", "hide-input", "remove-cell", "remove-input"}
REMOVED_OUTPUT = {"remove-cell", "remove-output"}
ASSERTION = re.compile(r"\bassert\b|assert_allclose|assert_close|assert_array|testing\.assert")
SOURCE = re.compile(r"inspect\.getsource|\.read_text\(\)")
WIDTH = 88
EXCERPT_LINES = 15
COLUMNS = ("words", "checks", "dumps", "figures", "wide")


def _split_code_blocks(markdown: str) -> tuple[str, list[str]]:
    """The markdown without its code blocks, and the lines of those blocks; a directive's
    fence (```{admonition}, :::{dropdown}) is dropped but the prose inside it kept."""
    kept, code, code_fence, directive_fences = [], [], None, []
    for line in markdown.splitlines():
        fence = re.match(r"\s*(`{3,}|~{3,}|:{3,})(.*)$", line)
        if code_fence is not None:
            if fence and fence.group(1) == code_fence and not fence.group(2).strip():
                code_fence = None
            else:
                code.append(line)
            continue
        if fence:
            marker, info = fence.group(1), fence.group(2).strip()
            if not info and directive_fences and directive_fences[-1] == marker:
                directive_fences.pop()
            elif info.startswith("{") and not info.startswith("{code"):
                directive_fences.append(marker)
            else:
                code_fence = marker
            continue
        kept.append(line)
    return "\n".join(kept), code


def prose_words(markdown: str) -> int:
    """Words of one markdown text, without code, math, directive lines and comments.

    >>> prose_words("Two words.\\n```python\\nx = 1\\n```\\n```{note}\\nThree more words\\n```")
    5
    """
    text, _ = _split_code_blocks(markdown)
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)
    text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.S)
    text = re.sub(r"\$[^$\n]+\$", " MATH ", text)
    text = re.sub(r"\{glue:\w+\}`[^`]*`", " NUMBER ", text)
    text = re.sub(r"\{(cite|doc|ref|py:\w+)[^}]*\}`[^`]*`", " REF ", text)
    text = re.sub(r"^\s*:[\w-]+:.*$", " ", text, flags=re.M)
    text = re.sub(r"`[^`]*`", " CODE ", text)
    return len(re.findall(r"[A-Za-z0-9][\w'.,-]*", text))


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _output_lines(cell: dict) -> list[str]:
    lines = []
    for output in cell.get("outputs", []):
        if "text" in output:
            lines += _text(output["text"]).splitlines()
        elif "text/plain" in output.get("data", {}) and not _has_image(output):
            lines += _text(output["data"]["text/plain"]).splitlines()
    return lines


def _has_image(output: dict) -> bool:
    return any(kind.startswith("image/") for kind in output.get("data", {}))


def notebook_stats(notebook: dict) -> dict[str, int]:
    """The columns of one notebook (see the module docstring)."""
    counts = dict.fromkeys(COLUMNS, 0)
    for cell in notebook["cells"]:
        source = _text(cell["source"])
        if cell["cell_type"] == "markdown":
            counts["words"] += prose_words(source)
            _, code = _split_code_blocks(source)
            counts["wide"] += sum(len(line) > WIDTH for line in code)
            continue
        if cell["cell_type"] != "code":
            continue
        tags = set(cell.get("metadata", {}).get("tags", []))
        shown_input = not tags & HIDDEN_INPUT
        outputs = [] if tags & REMOVED_OUTPUT else _output_lines(cell)
        if shown_input and ASSERTION.search(source):
            counts["checks"] += 1
        if SOURCE.search(source) and len(outputs) > EXCERPT_LINES and "remove-output" not in tags:
            counts["dumps"] += 1
        if any(_has_image(output) for output in cell.get("outputs", [])):
            counts["figures"] += 1
        wide_code = sum(len(line) > WIDTH for line in source.splitlines()) if shown_input else 0
        counts["wide"] += wide_code + sum(len(line) > WIDTH for line in outputs)
    return counts


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout


def read_chapters(revision: str | None) -> dict[str, dict[str, int]]:
    """Columns per chapter at a git revision, or in the working tree (None)."""
    if revision is None:
        paths = sorted(str(path.relative_to(ROOT)) for path in (ROOT / BOOK).glob("*.ipynb"))
        paths.append(str(BOOK / "intro.md"))
        read = lambda path: (ROOT / path).read_text()  # noqa: E731
    else:
        listing = _git("ls-tree", "--name-only", revision, f"{BOOK}/").split()
        paths = sorted(p for p in listing if p.endswith(".ipynb")) + [str(BOOK / "intro.md")]
        read = lambda path: _git("show", f"{revision}:{path}")  # noqa: E731
    stats = {}
    for path in paths:
        name = Path(path).stem
        if path.endswith(".md"):
            text = read(path)
            wide = sum(len(line) > WIDTH for line in _split_code_blocks(text)[1])
            stats[name] = dict.fromkeys(COLUMNS, 0) | {"words": prose_words(text), "wide": wide}
        else:
            stats[name] = notebook_stats(json.loads(read(path)))
    return stats


def table(now: dict, base: dict | None) -> str:
    """A markdown table; with a base, each cell reads 'before -> after'."""
    names = list(dict.fromkeys([*(base or {}), *now]))
    rows = ["| chapter | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    totals_now = {c: sum(s[c] for s in now.values()) for c in COLUMNS}
    totals_base = base and {c: sum(s[c] for s in base.values()) for c in COLUMNS}
    for name, row_now, row_base in [
        *((n, now.get(n), (base or {}).get(n)) for n in names),
        ("**total**", totals_now, totals_base),
    ]:
        cells = []
        for column in COLUMNS:
            after = "-" if row_now is None else str(row_now[column])
            if base is None:
                cells.append(after)
            else:
                before = "-" if row_base is None else str(row_base[column])
                cells.append(f"{before} -> {after}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    if base:
        change = 100 * (totals_now["words"] - totals_base["words"]) / totals_base["words"]
        rows.append(f"\nwords of prose, book-wide: {change:+.0f}%")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", help="a git revision to compare with (before -> after)")
    args = parser.parse_args(argv)
    base = read_chapters(args.base) if args.base else None
    print(table(read_chapters(None), base))
    return 0


if __name__ == "__main__":
    sys.exit(main())
