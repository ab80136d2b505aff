"""Docs that cannot drift: no tracker vocabulary (issue numbers, work "rounds") in docs, notebooks or the
library (history lives in CHANGELOG.md), and the facts the prose states checked against their source: notebook
02's families and weights against its params, docs/data.md's tiny sizes against stage 01's params, the
variant list of docs/ARCHITECTURE.md against run.yaml, and the presence-probe figures docs/models.md quotes
for the committed golden run (outputs/golden) against that run's metrics."""
from __future__ import annotations

import json
import re

import nbformat
import pytest
import yaml

from avere_utils.paths import REPO_ROOT

SCANNED = ("docs", "notebooks", "avere_utils")
TRACKER = re.compile(r"\bissue\s+#?\d+|\bround(s)?\b", re.IGNORECASE)
# "round" as rounding or a round trip is not a work round
ALLOWED_AFTER = re.compile(r"\(|\s*[- ]trip|ing\b|ed\b", re.IGNORECASE)


def tracker_words(text: str) -> list[str]:
    """Each tracker word in `text`, with a little context."""
    found = []
    for m in TRACKER.finditer(text):
        if m.group(0).lower().startswith("round") and ALLOWED_AFTER.match(text, m.end()):
            continue
        if m.group(0).lower().startswith("round") and text[max(0, m.start() - 1):m.start()] == ".":
            continue  # df.round
        found.append(text[max(0, m.start() - 30):m.end() + 30].replace("\n", " "))
    return found


def test_the_tracker_check_catches_planted_words_and_spares_rounding():
    assert len(tracker_words("the bar of issue 35; measured this round; two rounds ago; Issue #7")) == 4
    assert tracker_words("round(x, 2), df.round(3), a JSON round trip, a round-trip, np.round(v)") == []


def test_no_issue_numbers_or_work_rounds_in_docs_notebooks_or_library():
    bad = []
    for folder in SCANNED:
        for path in sorted((REPO_ROOT / folder).rglob("*")):
            if path.suffix not in (".md", ".py", ".ipynb") or "__pycache__" in path.parts:
                continue
            bad += [f"{path.relative_to(REPO_ROOT)}: ...{hit}..." for hit in tracker_words(path.read_text())]
    assert not bad, "tracker vocabulary (history goes to CHANGELOG.md):\n" + "\n".join(bad)


def _params(profile: str, stage: str) -> dict:
    return yaml.safe_load((REPO_ROOT / "params" / profile / f"{stage}.yaml").read_text())


def test_notebook_02_names_every_family_with_its_modality_and_tiny_weight():
    from avere_utils.pairs.params import FAMILIES, FAMILY_MODALITY

    weights = _params("tiny", "02_pair_construction")["family_weights"]
    assert set(weights) == set(FAMILIES)
    nb = nbformat.read(str(REPO_ROOT / "notebooks" / "02_pair_construction.ipynb"), as_version=4)
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    rows = {m.group(1): (m.group(2), float(m.group(3)))
            for m in re.finditer(r"^\| `(\w+)` \| (\w+) \| ([\d.]+) \|", prose, re.MULTILINE)}
    assert rows == {f: (FAMILY_MODALITY[f], float(weights[f])) for f in FAMILIES}
    assert re.search(rf"come in {_number_word(len(FAMILIES))} families", prose)
    total = sum(weights.values())
    share = {m: sum(w for f, w in weights.items() if FAMILY_MODALITY[f] == m) / total for m in ("visual", "audio", "both")}
    stated = re.search(r"visual / audio / both about ([\d.]+) / ([\d.]+) / ([\d.]+)", prose)
    assert stated and [float(x) for x in stated.groups()] == [round(share[m], 2) for m in ("visual", "audio", "both")]
    assert "four families" not in prose and "equal shares" not in prose


def _number_word(n: int) -> str:
    return {4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}.get(n, str(n))


def test_data_md_states_the_tiny_sizes_of_stage_01s_params():
    P = _params("tiny", "01_data_preparation")
    text = (REPO_ROOT / "docs" / "data.md").read_text()
    line = text[text.index("Tiny sizes"):]
    line = " ".join(line[:line.index("\n\n")].split())
    n_tasks = 5  # EmoReAlM: basic audio, basic video, modality agreement, stress audio, stress video
    expected = [f"train_source {P['n_train_source']}",
                f"DFEW test {7 * P['n_dfew_test_per_class']:,} ({P['n_dfew_test_per_class']} per class)",
                f"DFEW train {7 * P['n_dfew_train_per_class']} ({P['n_dfew_train_per_class']} per class)",
                f"RAVDESS {P['n_ravdess_actors']} actors",
                f"MER2023 {P['n_mer2023']} (+{P['n_mer2023_worried']} worried)",
                f"EMER {P['n_emer']}",
                f"EmoReAlM {n_tasks * P['n_emorealm_per_task']:,} items ({P['n_emorealm_per_task']} per task"]
    missing = [e for e in expected if e not in line]
    assert not missing, f"docs/data.md's 'Tiny sizes' line disagrees with the params: {missing}\n{line}"
    assert f"({P['n_emorealm_per_task']} per task at tiny)" in text


def test_architecture_lists_every_variant_of_run_yaml():
    run = yaml.safe_load((REPO_ROOT / "params" / "tiny" / "run.yaml").read_text())
    text = (REPO_ROOT / "docs" / "ARCHITECTURE.md").read_text()
    block = text[text.index("Variant names"):]
    block = block[:block.index("\n\n")]
    named = re.findall(r"`(\w+)`", block)
    assert [v for v in named if v in run["eval_variants"]] == run["eval_variants"]


PROBE = REPO_ROOT / "outputs" / "golden" / "metrics" / "presence_probe-reference.json"


@pytest.mark.skipif(not PROBE.is_file(), reason="no committed golden run")
def test_models_md_quotes_the_committed_runs_presence_probe():
    m = json.loads(PROBE.read_text())
    text = " ".join((REPO_ROOT / "docs" / "models.md").read_text().split())
    yes_no = f"{m['yes_no']['visual']['balanced_accuracy']:.3f} / {m['yes_no']['audio']['balanced_accuracy']:.3f}"
    cue_list = f"{m['cue_list']['visual']['balanced_accuracy']:.3f} / {m['cue_list']['audio']['balanced_accuracy']:.3f}"
    stated = re.search(r"committed golden run of today \(`outputs/golden/metrics/presence_probe-reference\.json`\) "
                       r"measures ([\d.]+ / [\d.]+) on the Yes/No probe and ([\d.]+ / [\d.]+) on the cue lists", text)
    assert stated, "docs/models.md no longer quotes the committed run's presence probe in the checked sentence"
    assert stated.groups() == (yes_no, cue_list), (
        f"docs/models.md quotes {stated.groups()}; the committed run measures {(yes_no, cue_list)}: update the doc")
