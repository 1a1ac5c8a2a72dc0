#!/usr/bin/env python3
"""The line budget: code lines per module of minidl/, and of the core one reads to follow ``fit``.

A code line holds at least one token that is not a comment, a docstring or whitespace: blank lines,
comment lines and docstrings are free, so the budget never argues against explaining the code.

    python .ci/budget.py            # the table; fails if a module is over its budget
    python .ci/budget.py --strict   # ... or if the core is over its budget too (what CI runs)

The core is the chain (layers/base.py, containers.py, state.py), the model and the training loop,
the optimisers, Dense and the losses: what someone new reads, in one sitting, to trace ``model.fit``.
"""

from __future__ import annotations

import argparse
import ast
import io
import sys
import tokenize
from pathlib import Path

MODULE_BUDGET = 600
CORE_BUDGET = 900
CORE = ["layers/base.py", "layers/containers.py", "layers/state.py", "model.py", "training.py", "optim.py",
        "layers/core.py", "layers/losses.py"]  # layers/state.py counts once it exists
FREE = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING,
        tokenize.ENDMARKER}


def docstring_lines(tree: ast.AST) -> set[int]:
    """The lines of every module, class and function docstring in ``tree``."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                lines.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return lines


def code_lines(source: str) -> int:
    """How many lines of ``source`` hold code (not blank, not only a comment, not a docstring)."""
    free = docstring_lines(ast.parse(source))
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in FREE:
            lines.update(n for n in range(tok.start[0], tok.end[0] + 1) if n not in free)
    return len(lines)


def count(package: Path) -> dict[str, int]:
    """``{path relative to package: code lines}`` for every module of ``package``, sorted by path."""
    return {p.relative_to(package).as_posix(): code_lines(p.read_text(encoding="utf-8"))
            for p in sorted(package.rglob("*.py"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strict", action="store_true", help="fail when the core is over its budget too")
    parser.add_argument("--package", type=Path, default=Path(__file__).resolve().parents[1] / "minidl")
    args = parser.parse_args(argv)

    counts = count(args.package)
    width = max(map(len, counts), default=10)
    for path, n in sorted(counts.items(), key=lambda item: -item[1]):
        flag = "  over" if n > MODULE_BUDGET else ("  core" if path in CORE else "")
        print(f"{path:<{width}}  {n:5d}{flag}")
    total = sum(counts.values())
    core = sum(n for path, n in counts.items() if path in CORE)
    print(f"{'total':<{width}}  {total:5d}  in {len(counts)} modules")
    print(f"{'core':<{width}}  {core:5d}  (budget {CORE_BUDGET}: {', '.join(p for p in CORE if p in counts)})")

    failed = False
    for path, n in counts.items():
        if n > MODULE_BUDGET:
            print(f"budget: {path} has {n} code lines, over the {MODULE_BUDGET} a module may have", file=sys.stderr)
            failed = True
    if core > CORE_BUDGET:
        print(f"budget: the core has {core} code lines, over its {CORE_BUDGET}"
              + ("" if args.strict else " (a warning: --strict makes it an error)"), file=sys.stderr)
        failed |= args.strict
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
