"""Every docstring example and every Python code block of the docs runs and passes.

* Docstrings: :mod:`doctest` over every ``pdeml`` module (``ELLIPSIS`` and
  ``NORMALIZE_WHITESPACE``), with JAX's default precision (x64 off), as a user would run them.
* Docs: every fenced ``python`` block of ``README.md`` and ``docs/**/*.md`` is executed; the
  blocks of one page share a namespace and run in order, like a notebook. A block that includes
  a file with ``--8<-- "path"`` (pymdownx.snippets, as the gallery pages include
  ``examples/*.py``) runs that file's text.

A block can be excluded from the default run only by a marker comment on the line before its
fence, with a reason:

* ``<!-- docs-test: slow (reason) -->``: runs only in the slow suite (``pytest -m slow``);
* ``<!-- docs-test: skip (reason) -->``: never runs (for blocks that need hardware or data CI
  does not have).

Every test restores ``jax.config`` (a docs page may switch x64 on, as users are told to).
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import jax
import pytest

import pdeml

ROOT = Path(__file__).resolve().parents[1]
OPTIONFLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
CONFIG_KEYS = ("jax_enable_x64", "jax_numpy_rank_promotion", "jax_default_matmul_precision")


@pytest.fixture
def jax_config():
    """Start from JAX's default precision (x64 off) and restore the caller's config after."""
    saved = {k: getattr(jax.config, k) for k in CONFIG_KEYS}
    jax.config.update("jax_enable_x64", False)
    try:
        yield
    finally:
        for k, v in saved.items():
            jax.config.update(k, v)


# ---- docstrings ------------------------------------------------------------------------------


def _module_names() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(pdeml.__path__, "pdeml.")
                  if m.name != "pdeml.__main__")


def _doctests(module) -> list[doctest.DocTest]:
    """The module's own doctests (not those of objects it re-exports)."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    src = getattr(module, "__file__", None)
    return [t for t in finder.find(module, module.__name__) if t.examples and t.filename == src]


def test_doctests_are_collected():
    """The walk finds the modules that hold examples (guards against a silently empty run)."""
    counts = {name: len(_doctests(importlib.import_module(name))) for name in _module_names()}
    total = sum(counts.values())
    assert total >= 80, counts
    assert counts["pdeml.inverse.solvers"] >= 3 and counts["pdeml.constraints.moe"] >= 1


MODULES_WITH_EXAMPLES = [n for n in _module_names() if _doctests(importlib.import_module(n))]


@pytest.mark.parametrize("name", MODULES_WITH_EXAMPLES)
def test_docstring_examples(name, jax_config):
    module = importlib.import_module(name)
    tests = _doctests(module)
    runner = doctest.DocTestRunner(optionflags=OPTIONFLAGS)
    report: list[str] = []
    for t in tests:
        runner.run(t, out=report.append)
    failed, attempted = runner.summarize(verbose=False)
    assert failed == 0, f"{failed} of {attempted} examples failed in {name}:\n" + "".join(report)


# ---- docs code blocks ------------------------------------------------------------------------

FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w+-]*)[^\n]*$")
MARKER = re.compile(r"<!--\s*docs-test:\s*(?P<kind>skip|slow)\s*\((?P<reason>[^)]+)\)\s*-->")
SNIPPET = re.compile(r'^\s*--8<--\s+"(?P<path>[^"]+)"\s*$')


@dataclass
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    code: str
    kind: str | None = None  # None, "skip" or "slow"
    reason: str = ""


def _include(code: str) -> str:
    """Replace pymdownx.snippets lines (``--8<-- "path"``) by the file they name."""
    out = []
    for line in code.splitlines():
        m = SNIPPET.match(line)
        out.append((ROOT / m["path"]).read_text() if m else line)
    return "\n".join(out)


def parse_blocks(text: str, page: str) -> list[Block]:
    """The fenced ``python`` blocks of a markdown page, with their skip/slow markers."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = len(m["indent"]), m["lang"], i
        j = i + 1
        while j < len(lines) and not re.match(r"^ *```\s*$", lines[j]):
            j += 1
        if j == len(lines):
            raise ValueError(f"{page}:{start + 1}: unclosed code fence")
        if lang in ("python", "py"):
            body = "\n".join(ln[indent:] for ln in lines[start + 1 : j])
            prev = lines[start - 1] if start else ""
            mk = MARKER.search(prev)
            blocks.append(Block(page, start + 1, _include(body),
                                mk["kind"] if mk else None, mk["reason"].strip() if mk else ""))
        i = j + 1
    return blocks


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _page_id(p: Path) -> str:
    return str(p.relative_to(ROOT))


def test_markers_state_a_reason():
    """Every marker names a reason, and only a few blocks are excluded from CI."""
    blocks = [b for p in _pages() for b in parse_blocks(p.read_text(), _page_id(p))]
    assert len(blocks) >= 14
    excluded = [b for b in blocks if b.kind]
    assert all(len(b.reason) >= 10 for b in excluded), [(b.page, b.line) for b in excluded]
    assert sum(b.kind == "skip" for b in blocks) <= 3


def _run_page(page: Path, include_slow: bool, tmp_path, monkeypatch):
    blocks = parse_blocks(page.read_text(), _page_id(page))
    runnable = [b for b in blocks if b.kind is None or (include_slow and b.kind == "slow")]
    if not runnable:
        pytest.skip(f"{_page_id(page)} has no code blocks to run here")
    monkeypatch.chdir(tmp_path)  # blocks that write files write them here
    monkeypatch.setenv("PDEML_CACHE_DIR", str(tmp_path / "cache"))  # not the user's cache
    # a real module, so that classes defined in a block (dataclasses, eqx.Module) work
    module = types.ModuleType("pdeml_docs_page")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for b in runnable:
        try:
            exec(compile(b.code, f"{b.page}:{b.line}", "exec"), module.__dict__)  # noqa: S102
        except Exception as e:  # noqa: BLE001
            raise AssertionError(f"code block at {b.page}:{b.line} failed: {e!r}") from e
    return runnable


PAGES_WITH_CODE = [p for p in _pages() if any(b.kind is None for b in parse_blocks(p.read_text(), ""))]


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=_page_id)
def test_docs_code_blocks(page, jax_config, tmp_path, monkeypatch):
    _run_page(page, False, tmp_path, monkeypatch)


SLOW_PAGES = [p for p in _pages() if any(b.kind == "slow" for b in parse_blocks(p.read_text(), ""))]


@pytest.mark.slow
@pytest.mark.parametrize("page", SLOW_PAGES, ids=_page_id)
def test_docs_code_blocks_slow(page, jax_config, tmp_path, monkeypatch):
    _run_page(page, True, tmp_path, monkeypatch)


def test_block_parser():
    """Markers, indentation, non-python fences and snippet includes are handled."""
    text = "\n".join([
        "```bash", "echo hi", "```",
        "<!-- docs-test: skip (needs a GPU machine) -->",
        "```python", "x = 1", "```",
        "  ```python", "  y = 2", "  ```",
        "```python", '--8<-- "pyproject.toml"', "```",
    ])
    blocks = parse_blocks(text, "t.md")
    assert [b.kind for b in blocks] == ["skip", None, None]
    assert blocks[0].reason == "needs a GPU machine" and blocks[0].line == 5
    assert blocks[1].code == "y = 2"
    assert blocks[2].code == (ROOT / "pyproject.toml").read_text()
