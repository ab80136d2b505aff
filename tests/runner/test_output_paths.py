"""A command-line flag handed to a writer as its folder is an error, not a model in the caller's folder.

Commit 5718ad9 carried `--start/{config.json, generation_config.json, model.safetensors}`: a tiny thinker
(the main SFT's model, the start of the presence-phase experiments; docs/models.md keeps their script out
of the repository) saved by `save_pretrained` into a folder named after the `--start` flag, relative to
the working directory, then committed with everything else.  Each test stands in a scratch working
directory holding only a run folder, makes the call with "--start" as the folder, and checks it fails
before anything is written and that the scratch directory still holds only the run folder."""
from __future__ import annotations

from pathlib import Path

import pytest

from avere_utils import config, runner
from avere_utils.paths import check_output_path

FLAG = "--start"


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> Path:
    """A working directory holding only `run/`, the run folder."""
    cwd = tmp_path / "cwd"
    (cwd / "run").mkdir(parents=True)
    monkeypatch.chdir(cwd)
    return cwd


def only_the_run_folder(cwd: Path) -> list[str]:
    return sorted(p.name for p in cwd.iterdir())


@pytest.mark.parametrize("path", [FLAG, "-o", f"run/{FLAG}", f"run/models/{FLAG}/x", Path(FLAG)])
def test_a_folder_that_looks_like_an_option_is_refused(path):
    with pytest.raises(ValueError, match="looks like a command-line option"):
        check_output_path(path)


@pytest.mark.parametrize("path", ["run/models/reference", "/tmp/a-b/c_d", "outputs/tiny", "x-"])
def test_ordinary_folders_pass(path):
    assert check_output_path(path) == Path(path)


@pytest.mark.parametrize("key", ["reference_dir", "run_dir"])
def test_a_path_parameter_named_like_an_option_is_a_configuration_error(scratch, key):
    # `--set reference_dir=--start`, or papermill's `-p reference_dir --start`: params resolve relative
    # to the repository root, so the model would have landed at the root, beside README.md
    with pytest.raises(config.ConfigError, match=f"key '{key}'.*looks like a command-line option"):
        config.load_stage("tiny", "03_reference_model", {key: FLAG})
    assert only_the_run_folder(scratch) == ["run"]


def test_a_run_folder_named_like_an_option_is_refused_before_any_notebook_runs(scratch):
    with pytest.raises(config.ConfigError, match="looks like a command-line option"):
        runner.plan("tiny", out=FLAG)
    assert only_the_run_folder(scratch) == ["run"]


@pytest.mark.model
def test_saving_a_model_to_the_flag_writes_nothing(scratch):
    from avere_utils.models.loading import LoraSettings, load_backend
    from avere_utils.models.tiny import build_tiny_checkpoint

    with pytest.raises(ValueError, match="looks like a command-line option"):
        build_tiny_checkpoint(FLAG, ["a few words for the tokenizer"] * 3, size="micro", seed=0)
    start = build_tiny_checkpoint(Path("run") / "models" / "reference", ["a few words for the tokenizer"] * 3,
                                  size="micro", seed=0)
    backend = load_backend(str(start), device="cpu")
    with pytest.raises(ValueError, match="save_pretrained: folder '--start'"):
        backend.save_pretrained(FLAG)
    tuned = load_backend(str(start), device="cpu", lora=LoraSettings(r=2, alpha=4))
    with pytest.raises(ValueError, match="save_adapter: folder '--start'"):
        tuned.save_adapter(FLAG)
    assert only_the_run_folder(scratch) == ["run"]
