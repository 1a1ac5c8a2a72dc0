"""The user docs stay true to the code: their Python blocks run, and the layer reference has the real signatures.

Each page's ```python blocks run in order in one namespace (a page is a walkthrough: later blocks use
what earlier ones made), in a temporary working directory. A ```text block that directly follows a
python block is that block's expected output. A block whose first line is ``# doc: no-run`` is skipped;
it must say why (data or time the test does not have).
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import io
import re
from pathlib import Path

import pytest

import minidl.layers
from minidl.layers.base import LAYERS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = ["../README.md", "layers.md", "extending.md", "training.md", "saving.md", "sklearn.md", "visualising.md",
         "data.md", "export.md", "scaling.md"]
NO_RUN = "# doc: no-run"
NEEDS = "# doc: needs "  # then the modules of an optional extra, e.g. "# doc: needs onnx onnxruntime"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```[ \t]*$", re.S | re.M)


def code_blocks(text: str) -> list[tuple[int, str, str | None]]:
    """``(line, code, expected_output)`` for every python block; ``line`` is the fence's, 1-based."""
    fences = list(FENCE.finditer(text))
    blocks = []
    for i, m in enumerate(fences):
        if m.group(1) != "python":
            continue
        expected = None
        after = fences[i + 1] if i + 1 < len(fences) else None
        if after is not None and after.group(1) == "text" and not text[m.end():after.start()].strip():
            expected = after.group(2)
        blocks.append((text.count("\n", 0, m.start()) + 1, m.group(2), expected))
    return blocks


@pytest.fixture
def clean_layer_registry():
    """Layer classes a page defines (Swish, Scale) register themselves; leave the registry as it was."""
    saved = dict(LAYERS)
    yield
    LAYERS.clear()
    LAYERS.update(saved)


# Pages whose blocks train for seconds (the inner loop, `pytest -m "not slow"`, leaves them to CI).
SLOW_PAGES = {"../README.md", "sklearn.md", "visualising.md", "export.md", "extending.md"}


@pytest.mark.parametrize("page", [pytest.param(p, marks=pytest.mark.slow) if p in SLOW_PAGES else p for p in PAGES])
def test_python_blocks_run(page, tmp_path, monkeypatch, clean_layer_registry):
    path = DOCS / page
    blocks = code_blocks(path.read_text(encoding="utf-8"))
    assert blocks, f"{page} has no python blocks"
    monkeypatch.chdir(tmp_path)  # files the examples save land here
    namespace = {"__name__": f"docs_{path.stem}"}
    for line, code, expected in blocks:
        if code.lstrip().startswith(NO_RUN):
            continue
        if code.lstrip().startswith(NEEDS):  # an optional extra: CI installs it; elsewhere the page is skipped
            for module in code.lstrip().splitlines()[0][len(NEEDS):].split():
                pytest.importorskip(module)
        # Padding puts the code on its own lines of the page, so a traceback points into the .md file.
        compiled = compile("\n" * line + code, str(path), "exec")
        out = io.StringIO()
        with contextlib.redirect_stdout(out) if expected is not None else contextlib.nullcontext():
            exec(compiled, namespace)
        if expected is not None:
            assert out.getvalue().strip() == expected.strip(), f"{page}:{line}: output differs from the text block after it"


def test_no_run_markers_are_rare_and_explained():
    for page in PAGES:
        for line, code, _ in code_blocks((DOCS / page).read_text(encoding="utf-8")):
            first = code.lstrip().splitlines()[0] if code.strip() else ""
            if first.startswith(NO_RUN):
                assert len(first) > len(NO_RUN) + 5, f"{page}:{line}: say why the block does not run"


def test_code_blocks_parser_pairs_output_with_its_block():
    text = "x\n```python\nprint(1)\n```\n\n```text\n1\n```\nprose\n```text\nnot output\n```\n```bash\nls\n```\n"
    assert code_blocks(text) == [(2, "print(1)\n", "1\n")]


def documented_signature(text: str, name: str) -> list[tuple[str, object]]:
    """``[(parameter, default or inspect.Parameter.empty), ...]`` of the first `Name(...)` in ``text``."""
    m = re.search(rf"`{name}\(([^`]*)\)`", text)
    assert m, f"docs/layers.md does not give the signature of {name}, as `{name}(...)`"
    args = ast.parse(f"def f({m.group(1)}): pass").body[0].args
    positional = args.posonlyargs + args.args
    defaults = [inspect.Parameter.empty] * (len(positional) - len(args.defaults)) + \
        [ast.literal_eval(d) for d in args.defaults]
    keyword = [(a.arg, inspect.Parameter.empty if d is None else ast.literal_eval(d))
               for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    return [(a.arg, d) for a, d in zip(positional, defaults)] + keyword


@pytest.mark.parametrize("name", minidl.layers.__all__)
def test_layer_reference_has_the_real_signature(name):
    """Every public class of minidl.layers is in docs/layers.md with its constructor's arguments and defaults.

    ``trainable`` and ``name``, which every layer takes, may be left out (the page says so once).
    """
    documented = documented_signature((DOCS / "layers.md").read_text(encoding="utf-8"), name)
    shown = {arg for arg, _ in documented}
    real = [(p.name, p.default) for p in inspect.signature(getattr(minidl.layers, name)).parameters.values()
            if not (p.kind is p.KEYWORD_ONLY and p.name in ("trainable", "name") and p.name not in shown)]
    assert documented == real


MARKDOWN = [ROOT / "README.md", *sorted(DOCS.glob("*.md")), *sorted(DOCS.glob("*/*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_inside_the_repository(page):
    """Every relative link resolves to a file of this repository: nothing points at a path outside
    it (the blog's script lived in ../shared/ once), and no link is broken."""
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT), f"{page.name}: {target} points outside the repository"
        assert path.exists(), f"{page.name}: {target} does not exist"


def test_the_blog_is_named_before_it_is_cited():
    """"The blog" is the README's shorthand: the post is named (title and number) before the first use."""
    readme = " ".join((ROOT / "README.md").read_text().split())
    named = readme.find("*Machine Learning from Scratch*, post 11")
    assert named != -1
    assert named < readme.lower().find("the blog") + 100


def test_the_readme_is_short_and_undated():
    """The README says what minidl is and how to start; measurements, with their dates, times of day, loads
    and machines, live in docs/benchmarks.md and docs/training.md, so a new measurement needs no README commit."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode()) <= 10_000, f"README.md is {len(readme.encode())} bytes, over 10 KB"
    for n, line in enumerate(readme.splitlines(), 1):
        assert not re.search(r"\b\d{1,2}:\d{2}(–\d{1,2}:\d{2})? UTC\b|load average|\b20\d\d-\d\d-\d\d\b", line), \
            f"README.md:{n} has a dated measurement; it belongs in docs/: {line}"


def test_the_readme_starts_with_the_two_commands():
    """The install-and-train and the test commands come first, before any prose about minidl."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [m.group(2).strip() for m in FENCE.finditer(readme)]
    assert blocks[:2] == [
        'python3 -m venv .venv && . .venv/bin/activate && pip install -e . && python -m minidl digits',
        'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[test,plot]" && python -m pytest -q',
    ]
    assert readme.index("```bash") < readme.index("## ")
