"""What git tracks stays a source repository: no model weights, no large files outside the committed
golden run (outputs/golden), no path that a shell would read as an option.

A checkpoint once came in under `--start/` (a command-line flag taken as an output folder, then
`git add -A`): 4.9 MB of weights at the repository root that every clone downloads.  The checks are pure
functions over (path, size) so that their failures can be shown on planted cases; one test runs them on
`git ls-files`."""
from __future__ import annotations

import subprocess
from pathlib import PurePosixPath

import pytest

from avere_utils.paths import REPO_ROOT

MAX_BYTES = 1_000_000
# the committed golden run: its figures and logs are the numbers the README quotes
LARGE_FILES_ALLOWED_UNDER = "outputs/golden/"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def large_files(files: list[tuple[str, int]], limit: int = MAX_BYTES) -> list[str]:
    return [f"{p}: {size} bytes > {limit}" for p, size in files
            if size > limit and not p.startswith(LARGE_FILES_ALLOWED_UNDER)]


def option_like_paths(files: list[tuple[str, int]]) -> list[str]:
    return [f"{p}: component {part!r} starts with '-'" for p, _ in files
            for part in PurePosixPath(p).parts if part.startswith("-")]


def weight_files(files: list[tuple[str, int]]) -> list[str]:
    # anywhere, outputs/golden included: a run folder's models are rebuilt by `make reproduce`
    return [f"{p}: model weights" for p, _ in files if p.lower().endswith(WEIGHT_SUFFIXES)]


def problems(files: list[tuple[str, int]]) -> list[str]:
    return large_files(files) + option_like_paths(files) + weight_files(files)


def tracked_files() -> list[tuple[str, int]] | None:
    """(path, size in the index) of every tracked file; None outside a git checkout."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--stage"], cwd=REPO_ROOT, capture_output=True,
                             text=True, check=True).stdout
        objects = [line.split("\t", 1) for line in out.split("\0") if line]
        shas = "\n".join(meta.split()[1] for meta, _ in objects)
        sizes = subprocess.run(["git", "cat-file", "--batch-check=%(objectsize)"], cwd=REPO_ROOT, input=shas,
                               capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return None
    return [(path, int(size)) for (_, path), size in zip(objects, sizes)]


def test_a_checkpoint_under_an_option_named_folder_is_caught_three_ways():
    planted = [("--x/model.safetensors", 4_905_664), ("--x/config.json", 2_471), ("README.md", 20_000)]
    assert problems(planted) == ["--x/model.safetensors: 4905664 bytes > 1000000",
                                 "--x/model.safetensors: component '--x' starts with '-'",
                                 "--x/config.json: component '--x' starts with '-'",
                                 "--x/model.safetensors: model weights"]


def test_a_large_file_is_allowed_only_in_the_golden_run():
    planted = [("docs/big.png", 2_000_000), ("outputs/golden/figures/big.png", 2_000_000),
               ("outputs/tiny/x.json", MAX_BYTES), ("outputs/goldenx/y.png", 2_000_000),
               ("outputs/reference/z.png", 2_000_000)]  # the golden run's former folder: no longer exempt
    assert problems(planted) == ["docs/big.png: 2000000 bytes > 1000000",
                                 "outputs/goldenx/y.png: 2000000 bytes > 1000000",
                                 "outputs/reference/z.png: 2000000 bytes > 1000000"]


@pytest.mark.parametrize("path", ["a/-b/c.txt", "a/b/-c.txt", "-top.txt"])
def test_a_component_starting_with_a_dash_is_caught_at_any_depth(path):
    assert option_like_paths([(path, 1)]) != []
    assert option_like_paths([(path.replace("-", "x"), 1)]) == []


@pytest.mark.parametrize("name", ["model.safetensors", "pytorch_model.bin", "adapter.pt", "m.PTH", "last.ckpt"])
def test_weights_are_caught_anywhere_even_small_and_in_the_golden_run(name):
    assert weight_files([(f"outputs/golden/models/{name}", 10)]) != []
    assert weight_files([(f"docs/{name}.md", 10)]) == []


def test_the_tracked_files_pass():
    files = tracked_files()
    if files is None:
        pytest.skip("not a git checkout: the tracked files come from `git ls-files`")
    assert len(files) > 100  # the listing worked (the repository has a few hundred files)
    found = problems(files)
    assert not found, "tracked files that do not belong in git (git rm them):\n" + "\n".join(found)
