"""The line budget script (.ci/budget.py) counts code lines only: docstrings, comments and blank lines are free."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("budget", ROOT / ".ci" / "budget.py")
assert spec is not None and spec.loader is not None
budget = importlib.util.module_from_spec(spec)
spec.loader.exec_module(budget)

TINY = '''"""A module docstring,
on two lines."""

import os  # a trailing comment does not make a line free, nor does it count twice

# a comment line


class A:
    """A class docstring."""

    x = """not a docstring: an assigned string
spanning two lines"""

    def f(self, a,
          b):
        """One line."""
        return (a +
                b)


def g():
    "A single-quoted docstring."
    "A second string statement is code, not a docstring."
    return os.sep
'''


def test_code_lines_skip_docstrings_comments_and_blank_lines():
    # import; class A; x = (2 lines); def f (2 lines); return (2 lines); def g; the second string; return
    assert budget.code_lines(TINY) == 1 + 1 + 2 + 2 + 2 + 1 + 1 + 1


def test_an_empty_or_docstring_only_module_has_no_code():
    assert budget.code_lines("") == 0
    assert budget.code_lines('"""Only a docstring."""\n\n# and a comment\n') == 0


def make_package(root: Path, modules: dict[str, int]) -> Path:
    for name, n in modules.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('"""Doc."""\n' + "".join(f"x{i} = {i}\n" for i in range(n)))
    return root / "pkg"


def test_a_module_over_its_budget_fails(tmp_path, capsys):
    package = make_package(tmp_path, {"small.py": 3, "layers/big.py": budget.MODULE_BUDGET + 1})
    assert budget.count(package) == {"layers/big.py": budget.MODULE_BUDGET + 1, "small.py": 3}
    assert budget.main(["--package", str(package)]) == 1
    assert "layers/big.py has 601 code lines" in capsys.readouterr().err


def test_the_core_over_its_budget_fails_only_when_strict(tmp_path, capsys):
    package = make_package(tmp_path, {"model.py": 500, "training.py": 500, "plot.py": 500})
    assert budget.main(["--package", str(package)]) == 0
    assert "the core has 1000 code lines" in capsys.readouterr().err
    assert budget.main(["--package", str(package), "--strict"]) == 1
    package = make_package(tmp_path / "fits", {"model.py": 450, "training.py": 450, "plot.py": 500})
    assert budget.main(["--package", str(package), "--strict"]) == 0
