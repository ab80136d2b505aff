"""docs/paper_run.md: every command in it is run by a test (the test is named on its line) or marked as needing
a GPU or the real data; the commands it says a test runs are the ones that test runs."""
from __future__ import annotations

import re

from avere_utils.paths import REPO_ROOT

DOC = REPO_ROOT / "docs" / "paper_run.md"
MARK = re.compile(r"\(needs (a GPU|GPUs|the real)")


def command_blocks() -> list[list[str]]:
    """The shell blocks, each as its logical lines (continuations joined)."""
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), re.S)
    out = []
    for b in blocks:
        lines = b.replace("\\\n", " ").splitlines()
        out.append([ln.strip() for ln in lines if ln.strip()])
    return out


def test_every_command_is_tested_or_marked():
    blocks = command_blocks()
    assert len(blocks) >= 6
    unmarked = []
    for lines in blocks:
        block_marked = lines[0].startswith("#") and bool(MARK.search(lines[0]))
        for ln in lines:
            if ln.startswith("#") or block_marked:
                continue
            tested = re.search(r"tests/(?:\w+/)?test_\w+\.py", ln)
            if not MARK.search(ln) and not (tested and (REPO_ROOT / tested.group(0)).is_file()):
                unmarked.append(ln)
    assert not unmarked, f"commands neither marked nor run by a named test: {unmarked}"


def test_the_commands_said_to_be_tested_are_in_those_tests():
    for lines in command_blocks():
        for ln in lines:
            m = re.search(r"tests/(?:\w+/)?test_\w+\.py", ln)
            if m and "preflight" in ln:
                assert "preflight" in (REPO_ROOT / m.group(0)).read_text() and "--profile" in ln
