"""Each notebook's `parameters` cell equals params/tiny/<stage>.yaml, so nbval and a bare run use the
embedded default; and source notebooks are committed without outputs."""
from __future__ import annotations

import json

import pytest

from avere_utils import config
from avere_utils.paths import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"


def parameters_cell(stage: str) -> tuple[dict, str]:
    nb = json.loads((NOTEBOOKS / f"{stage}.ipynb").read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{stage}: expected exactly one cell tagged 'parameters', found {len(cells)}"
    source = "".join(cells[0]["source"])
    namespace: dict = {}
    exec(source, {}, namespace)
    return namespace, source


@pytest.mark.parametrize("stage", list(config.STAGES))
def test_parameters_cell_equals_tiny_profile(stage):
    namespace, _ = parameters_cell(stage)
    expected = config.load_yaml(config.stage_file("tiny", stage))
    assert {k: v for k, v in namespace.items() if not k.startswith("_")} == expected


@pytest.mark.parametrize("stage", list(config.STAGES))
def test_notebook_is_committed_without_outputs(stage):
    nb = json.loads((NOTEBOOKS / f"{stage}.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
