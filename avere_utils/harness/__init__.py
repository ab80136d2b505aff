"""The kit's benchmarks and models inside other evaluation harnesses.

lmms-eval (EvolvingLMMs-Lab/lmms-eval):

* `lmms_export`  - `avere-kit export-lmms-eval --profile P OUT`: a task folder (YAML files, a `utils` module, the items)
  for EmoReAlM, DFEW and RAVDESS, read from the profile's manifests;
* `lmms_tasks`   - what that folder's `utils` module calls: prompts, media paths, candidate answers, and `process_results` /
  aggregations that score with the kit's own scorers (`paper`, `strict`, `scoring` modes), so a figure from
  lmms-eval is the figure `avere-kit score` and notebooks 05 / 07 give for the same answers;
* `lmms_core`    - the model side without lmms-eval: requests -> the kit's prediction runner and backend;
* `lmms_model`   - the lmms-eval model class (`avere_omni`, registered through the `lmms_eval.models` entry
  point of the `[lmms]` extra); the only module here that imports lmms_eval.
"""
