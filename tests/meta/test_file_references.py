"""Every file the library, the notebooks, the tests and the docs name is a file of this repository.

A citation such as "(PAPER.md, ERP)" sends a reader to a file nobody can open: the spec the code cites lives
in docs/ (CONTRIBUTING.md).  What counts as a name, and where it may resolve:

* a token ending in a source, doc or config extension (`docs/method.md`, `training/loss.py`,
  `configs/accelerate/ddp.yaml`), and the target of a relative markdown link;
* it resolves relative to the repository root, to the citing file's folder or to the package
  (`models/omni.py` is how CONTRIBUTING.md and the docs name `avere_utils/models/omni.py`); a bare file name
  resolves when some tracked file has it;
* in Python, comments, docstrings and the `.md` names of any string (an error message may cite a doc) are
  read; other string literals are file names the code reads or writes at run time (run artefacts, a test's
  scratch notebooks), not citations.
"""
from __future__ import annotations

import ast
import io
import re
import subprocess
import tokenize
from pathlib import PurePosixPath

import pytest

from avere_utils.paths import REPO_ROOT

SCANNED = ("avere_utils", "notebooks", "tests", "docs")
SCANNED_SUFFIXES = (".py", ".md", ".ipynb", ".yaml", ".yml")
PACKAGE = "avere_utils"
THIS = "tests/meta/test_file_references.py"

# Files that are legitimately not in this repository.  Keep it short: each entry says where the file lives.
EXTERNAL = {
    # ihp-lab/AVERE, the authors' released evaluation code (avere_utils/evaluation/released.py mirrors it)
    "evaluate/gpt_evaluation.py": "ihp-lab/AVERE",
    "gpt_evaluation.py": "ihp-lab/AVERE (evaluate/gpt_evaluation.py)",
    "evaluate_emorealm.py": "ihp-lab/AVERE",
    # transformers' own source, the processor the kit's video patchify is checked against (docs/models.md)
    "processing_qwen2_5_omni.py": "transformers/models/qwen2_5_omni",
}

_NAME = re.compile(r"(?<![\w./:@-])((?:[\w.-]+/)*[\w-]+(?:\.[\w-]+)*\.(?:md|py|ipynb|ya?ml|toml|sh|cfg))(?![\w/*])")
_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)\s]*)?\)")
_DOC_NAME = re.compile(r"(?<![\w./:@-])((?:[\w.-]+/)*[\w-]+(?:\.[\w-]+)*\.md)(?![\w/*])")


def _git_files() -> list[str] | None:
    """Tracked files and new ones not yet added (an untracked, not ignored file is part of the work)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                             capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return [p for p in out.stdout.split("\0") if p]


def _python_texts(source: str) -> list[tuple[int, str, re.Pattern[str]]]:
    """(line, text, pattern) of what a Python file says to its reader: comments and docstrings in full,
    every other string for `.md` names only."""
    out: list[tuple[int, str, re.Pattern[str]]] = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            out.append((tok.start[0], tok.string, _NAME))
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                docstrings.add(id(first.value))
                out.append((first.value.lineno, first.value.value, _NAME))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            out.append((node.lineno, node.value, _DOC_NAME))
    return out


def cited_names(path: str, text: str) -> list[tuple[int, str]]:
    """(line, name) of every file name `text` (the content of repository file `path`) cites."""
    if path.endswith(".py"):
        chunks = _python_texts(text)
    else:
        chunks = [(1, text, _NAME)]
    found: dict[tuple[int, str], None] = {}  # a markdown link's target is also a bare name: report it once
    for first_line, chunk, pattern in chunks:
        for rx in (pattern, _LINK) if pattern is _NAME else (pattern,):
            for m in rx.finditer(chunk):
                name = m.group(1)
                if "://" in name or name.startswith(("mailto:", "#")) or any(c in name for c in "*<>{}$"):
                    continue
                found[(first_line + chunk.count("\n", 0, m.start()), name)] = None
    return sorted(found)


def resolves(name: str, citing: str, tracked: set[str], basenames: set[str]) -> bool:
    """Whether `name`, cited in repository file `citing`, is a file (or folder) of the repository."""
    if name in EXTERNAL:
        return True
    if "/" not in name.rstrip("/") and name in basenames:
        return True
    folder = PurePosixPath(citing).parent
    for base in (PurePosixPath("."), folder, PurePosixPath(PACKAGE)):
        candidate = _normalise(base / name)
        if candidate is None:
            continue
        if candidate in tracked or any(t.startswith(candidate.rstrip("/") + "/") for t in tracked):
            return True
    return False


def _normalise(p: PurePosixPath) -> str | None:
    parts: list[str] = []
    for part in p.parts:
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def dangling(files: dict[str, str], tracked: set[str]) -> list[str]:
    """`path:line: name` for every cited name that does not resolve; `files` maps a path to its text."""
    basenames = {PurePosixPath(t).name for t in tracked}
    return [f"{path}:{line}: {name}" for path, text in sorted(files.items())
            for line, name in cited_names(path, text) if not resolves(name, path, tracked, basenames)]


def test_a_citation_of_a_missing_file_is_found():
    tracked = {"docs/method.md", "avere_utils/training/loss.py", "avere_utils/training/trainer.py", "README.md"}
    files = {
        "avere_utils/training/loss.py": '"""The loss (PAPER.md, ERP); derived in docs/method.md."""\n'
                                        '# the loop is in trainer.py and training/trainer.py\n'
                                        'def f():\n    raise ValueError("see DESIGN.md")\n'
                                        'OUT = "metrics/dfew-x.json"  # a run artefact: not a citation\n'
                                        'NB = "scratch.ipynb"\n',
        "docs/x.md": "[method](method.md), [readme](../README.md), [gone](gone.md#top), evaluate/gpt_evaluation.py",
    }
    assert dangling(files, tracked) == ["avere_utils/training/loss.py:1: PAPER.md",
                                        "avere_utils/training/loss.py:4: DESIGN.md", "docs/x.md:1: gone.md"]


def test_every_file_the_sources_and_docs_name_exists():
    tracked_list = _git_files()
    if tracked_list is None:
        pytest.skip("not a git checkout: the set of repository files comes from `git ls-files`")
    tracked = set(tracked_list)
    files = {p: (REPO_ROOT / p).read_text() for p in tracked_list
             if p.split("/", 1)[0] in SCANNED and p.endswith(SCANNED_SUFFIXES) and (REPO_ROOT / p).is_file()}
    files.pop(THIS, None)  # its planted cases name missing files on purpose
    found = dangling(files, tracked)
    assert not found, "names of files the repository lacks (cite docs/method.md, or add to EXTERNAL):\n" + "\n".join(found)


def test_the_allow_list_names_only_files_outside_the_repository():
    tracked = _git_files()
    if tracked is None:
        pytest.skip("not a git checkout: the set of repository files comes from `git ls-files`")
    basenames = {PurePosixPath(t).name for t in tracked}
    assert [n for n in EXTERNAL if n in tracked or PurePosixPath(n).name in basenames] == []
