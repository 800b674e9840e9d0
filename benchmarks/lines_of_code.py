"""Lines of code of a package: lines that are not blank, not comment-only and not docstrings.

    python benchmarks/lines_of_code.py featurekit                     # the whole package
    python benchmarks/lines_of_code.py featurekit --except page.py page_assets.py sweep_page.py gallery.py
    python benchmarks/lines_of_code.py featurekit --files             # per file, largest last

Issue 14 counts `featurekit/` without the HTML report's modules (the second line). A line holding code and a
comment counts; a docstring counts nowhere (module, class or function), other strings count as code.
"""

from __future__ import annotations

import argparse
import ast
import io
import tokenize
from pathlib import Path

SKIPPED_TOKENS = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                  tokenize.ENDMARKER}


def docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and \
                    isinstance(first.value.value, str):
                lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def code_lines(source: str) -> int:
    lines = {line for token in tokenize.generate_tokens(io.StringIO(source).readline)
             if token.type not in SKIPPED_TOKENS for line in range(token.start[0], token.end[0] + 1)}
    return len(lines - docstring_lines(ast.parse(source)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--except", dest="excluded", nargs="*", default=[], help="file names left out")
    parser.add_argument("--files", action="store_true", help="list each file's count")
    args = parser.parse_args()
    counts = sorted((code_lines(path.read_text(encoding="utf-8")), str(path))
                    for path in args.folder.rglob("*.py") if path.name not in args.excluded)
    if args.files:
        for count, path in counts:
            print(f"{count:6d} {path}")
    print(f"{sum(count for count, _ in counts):,} lines of code in {len(counts)} files")


if __name__ == "__main__":
    main()
