"""`--mode=report`: compares the runs of a workdir in WORKDIR/report/.

  report.md     per evaluator, a table of its headline numbers per run and, per group of seeds,
                their mean ± std; the pipeline's wall time per stage; the figures below.
  results.json  every run's numbers and the pipeline's wall time per stage (layout below).
  figures/      <run>_negatives.png: test positives | drawn negatives | masks, a row each;
                <run>_words.png: each attribute word's matchmap heat map over the same images;
                <run>_peaks.png: per cell of the matchmap grid, the share of test captions that
                peak there beside the share of images with an object there (localisation);
                curve_<tag>.png: a training curve (loss, validation recall, ...) of every run,
                with the chance level where it has one; intervals_<metric>.png: the reproduce
                experiment's arms minus regular with their 95% intervals.

results.json:
  {"<run>": {"<evaluator>": {"<metric>": number or null}},   # every run with checkpoints
   "_groups": {"<group>": {"runs": ["<run>", ...],
                           "<evaluator>": {"<metric>": {"mean": m, "std": s, "n": n}}}},
   "_pipeline_seconds": {"<stage>": seconds},                # WORKDIR/pipeline_times.json
   "_experiment": {"<arm>": {"<metric>": {"seeds": {"<k>": {"diff", "low", "high"}},
                                          "mean": {"diff", "low", "high"}}}}}
                                    # the reproduce experiment's arms minus regular (if any)
Keys starting with "_" are reserved: no run may be named so. A run's numbers are its
runs/<run>/eval/<evaluator>.json (written by --mode=eval) less the metadata (checkpoint, step,
...), nested dicts flattened with "/" (attributes: "categories/color", "words/red/score") and
non-numbers (lists, paths) left out; NaN is null. An evaluator skipped or never run is absent.
The report stage's own time is recorded after the report is written; report.md's table shows this
report's time up to writing it.

Seeds: a run <base> and runs <base>_seed<k> are seeds of one experiment (train them with
--config.train.name=<base>_seed<k> --config.seed=<k>); two or more make a group, whose spread is
the sample standard deviation (ddof 1) over its runs that have the metric (n of them).

Figures use each run's evaluated checkpoint (config.evals.checkpoint), the frozen generator and
the first EXAMPLES pairs of config.evals.split. Negatives are drawn with random units (cluster
mode's concept arrays belong to training) and the same key for every run: each run is shown the
same draws. A word's heat map is the matchmap's max over the word's valid frames, divided by the
largest value over all words in that image, so a weakly matched word stays dark.
"""
import functools
import os
import re
import time

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import nnx

from learning_words import experiment, workdir as wd
from learning_words.common import errors, figures, files, jsonio, mesh as mesh_lib, writers
from learning_words.data import input_pipeline
from learning_words.evaluation import attributes, intervals, suite, trained_run
from learning_words.learner import drawing, losses, matchmap
from learning_words.models import encoders
from learning_words.models import generator as gen_lib

EXAMPLES = 4  # test pairs in each run's figures
CURVE_TAGS = ("loss", "val/score", "val/A_r5", "val/I_r5", "val/peak_object", "val/peak_border",
              "neg/accepted_rate", "neg/mask_area", "neg/mean_tries")
# Each curve's title and y-axis label.
CURVE_LABELS = {
    "loss": ("training loss (dashed: each run's chance)", "loss"),
    "val/score": ("validation score, (A_r5 + I_r5) / 2: picks the best checkpoint", "recall@5"),
    "val/A_r5": ("validation A_r5 (image -> speech)", "recall@5"),
    "val/I_r5": ("validation I_r5 (speech -> image)", "recall@5"),
    "val/peak_object": ("captions peaking on an object (dashed: chance)", "share of captions"),
    "val/peak_border": ("captions peaking on the border (dashed: chance)", "share of captions"),
    "neg/accepted_rate": ("samples with an accepted drawn negative", "share of samples"),
    "neg/mask_area": ("drawn negatives' mask area", "share of the image"),
    "neg/mean_tries": ("tries an accepted negative took", "tries"),
}
# The drawn negatives' training statistics (negatives.draw_negatives), averaged over a run's log.
NEGATIVE_STATS = ("accepted_rate", "mean_tries", "mask_area", "mean_change", "mean_strength",
                  "renders")
HEADLINE = {"retrieval": ("A_r1", "A_r5", "A_r10", "I_r1", "I_r5", "I_r10"),
            "edited_recall": ("r1", "r5"),
            "semantic": ("pairwise", "pairwise_by/color", "pairwise_by/material",
                         "pairwise_by/size", "pairwise_by/shape", "r1", "r3"),
            "attributes": ("categories/color", "categories/material", "categories/size",
                           "categories/shape", "mean", "count_spearman", "n_pairs"),
            "probe": ("categories/color", "categories/material", "categories/size",
                      "categories/shape", "mean", "random/mean", "pixels/mean"),
            "attributes_matched": ("categories/color", "categories/material", "categories/size",
                                   "categories/shape", "mean", "n_pairs"),
            "localisation": ("on_object", "chance_on_object", "on_border", "chance_on_border",
                             "by_similarity/dot/on_object", "by_similarity/cosine/on_object"),
            "word_pointing": ("categories/color", "categories/material", "categories/size",
                              "categories/shape", "mean", "chance", "ratio"),
            "edit_effect": ("peak/accepted", "peak/mask_on_object", "peak/changes/one_attribute",
                            "peak/specificity/own", "peak/specificity/other",
                            "random/accepted", "random/mask_on_object")}
# One line under each evaluator's heading: what its numbers say (docs/results.md has the rest).
DESCRIPTIONS = {
    "retrieval": "Recall@k over the held-out pairs: A = image -> speech, I = speech -> image.",
    "edited_recall": "The caption's image ranked among 9 negatives the generator redrew inside "
                     "the caption's region: R@1, R@5.",
    "semantic": "The caption's image against 4 images with one attribute of one object changed: "
                "`pairwise` is the share of (image, negative) pairs it scores higher, overall and "
                "by the changed attribute; R@1 / R@3 need it to beat all four.",
    "attributes_matched": "The word test: each spoken attribute word scores an image with its "
                          "attribute above one without it that holds as many objects.",
    "attributes": "The paper's word test by the reference's protocol (the i-th image with a word "
                  "against the i-th without). It also reads clutter: `count_spearman` is the "
                  "mean correlation of a word's score with the image's object count.",
    "probe": "A linear probe reading each object's attributes from the image feature at its "
             "cell (test accuracy), beside a random encoder's features and the raw pixels.",
    "localisation": "The share of captions whose matchmap peak lies on an object cell / on the "
                    "grid's border.",
    "word_pointing": "Does each spoken attribute word peak on a cell that holds it?",
    "edit_effect": "Negatives drawn at the caption's peak, at a random place and on another "
                   "object: acceptance, where the masks land, what changed.",
}
# Column headings of the metrics that are not self-explaining keys.
COLUMN_LABELS = {
    "categories/color": "colour", "categories/material": "material", "categories/size": "size",
    "categories/shape": "shape", "n_pairs": "pairs", "count_spearman": "score vs object count (Spearman)",
    "pairwise": "pairwise", "pairwise_by/color": "pairwise: colour",
    "pairwise_by/material": "pairwise: material", "pairwise_by/size": "pairwise: size",
    "pairwise_by/shape": "pairwise: shape", "r1": "R@1", "r3": "R@3", "r5": "R@5",
    "random/mean": "random encoder: mean", "pixels/mean": "pixels: mean",
    "on_object": "on objects", "chance_on_object": "chance (objects)",
    "on_border": "on the border", "chance_on_border": "chance (border)",
    "by_similarity/dot/on_object": "on objects, dot product",
    "by_similarity/cosine/on_object": "on objects, cosine", "ratio": "over chance",
    "peak/accepted": "accepted at the peak", "peak/mask_on_object": "mask on objects, at the peak",
    "peak/changes/one_attribute": "one attribute of one object changed, at the peak",
    "peak/specificity/own": "own caption's drop", "peak/specificity/other": "other captions' drop",
    "random/accepted": "accepted at a random place",
    "random/mask_on_object": "mask on objects, random place",
}
META = ("evaluator", "run", "checkpoint", "step", "dataset", "split", "seed")
SEED_NAME = re.compile(r"^(?P<base>.+)_seed(?P<seed>\d+)$")


# ---------------------------------------------------------------------------
# Numbers: eval JSONs -> results.json.


def flatten_metrics(d: dict, prefix: str = "") -> dict:
  """Nested dict -> {"a/b": number}: numbers kept (None, i.e. NaN, as NaN); strings, lists and
  booleans left out."""
  out = {}
  for key, value in d.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      out.update(flatten_metrics(value, name + "/"))
    elif value is None:
      out[name] = float("nan")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
      out[name] = value
  return out


def read_evals(run_dir: str, which: str = "best") -> dict:
  """{evaluator: its JSON} from the run's evaluation of checkpoint `which` (workdir.eval_folder)
  <evaluator>.json. eval.json is not read: an evaluation with fewer evaluators rewrites it, while
  the others' files stay."""
  out = {}
  folder = epath.Path(wd.eval_folder(run_dir, which))
  for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
    if path.name != "eval.json":
      d = jsonio.read_json(path)
      out[d.get("evaluator", path.stem)] = d
  return out


def run_metrics(evals: dict) -> dict:
  """{evaluator: {metric: value}} of read_evals' output; skipped evaluators left out."""
  return {name: flatten_metrics({k: v for k, v in d.items() if k not in META})
          for name, d in evals.items() if "skipped" not in d}


def group_seeds(runs) -> dict:
  """{base: [runs]} for each base with two or more runs among `base` and `base_seed<k>`,
  ordered by seed (`base` itself first)."""
  groups = {}
  for run in runs:
    m = SEED_NAME.match(run)
    groups.setdefault(m["base"] if m else run, []).append((int(m["seed"]) if m else -1, run))
  return {base: [r for _, r in sorted(members)] for base, members in groups.items()
          if len(members) > 1}


def aggregate(values) -> dict:
  """{"mean", "std" (ddof 1; NaN below two values), "n"} over the finite values."""
  v = np.asarray(values, np.float64)
  v = v[np.isfinite(v)]
  return {"mean": float(v.mean()) if v.size else float("nan"),
          "std": float(v.std(ddof=1)) if v.size > 1 else float("nan"), "n": int(v.size)}


def aggregate_group(results: dict, members) -> dict:
  """{evaluator: {metric: aggregate over the members that have it}}."""
  values = {}
  for run in members:
    for name, metrics in results[run].items():
      for metric, value in metrics.items():
        values.setdefault(name, {}).setdefault(metric, []).append(value)
  return {name: {m: aggregate(v) for m, v in metrics.items()} for name, metrics in values.items()}


def collect_results(workdir: str, runs, which: str = "best") -> tuple[dict, dict]:
  """(results.json's object, {run: read_evals(run, which)}); see the module docstring."""
  reserved = [r for r in runs if r.startswith("_")]
  if reserved:
    raise ValueError(f"runs {reserved}: names starting with '_' are reserved in results.json")
  evals = {run: read_evals(wd.path(workdir, "runs", run), which) for run in runs}
  results = {run: run_metrics(evals[run]) for run in runs}
  groups = {base: {"runs": members, **aggregate_group(results, members)}
            for base, members in group_seeds(runs).items()}
  times = jsonio.read_json(wd.path(workdir, "pipeline_times.json"))
  return {**results, "_groups": groups, "_pipeline_seconds": times}, evals


def experiment_differences(evals: dict) -> dict:
  """{arm: {metric: {'seeds': {seed: interval}, 'mean': interval}}}: each arm of the reproduce
  experiment minus `regular`, per seed it shares with `regular_seed<k>` and over those seeds
  (intervals.paired_difference on the evaluators' items); arms or metrics without items are left
  out."""
  seeds = {}
  for run in evals:
    m = SEED_NAME.match(run)
    if m and m["base"] in experiment.ARMS:
      seeds.setdefault(m["base"], []).append(int(m["seed"]))
  base = set(seeds.get("regular", ()))
  out = {}
  for arm in experiment.ARMS:
    shared = sorted(s for s in seeds.get(arm, ()) if s in base)
    if arm == "regular" or not shared:
      continue
    for metric in intervals.METRICS:
      a = [intervals.items_of(evals[experiment.arm_name(arm, s)], metric) for s in shared]
      b = [intervals.items_of(evals[experiment.arm_name("regular", s)], metric) for s in shared]
      if any(x is None for x in a + b):
        continue
      per = {str(s): intervals.paired_difference([x], [y], metric)
             for s, x, y in zip(shared, a, b)}
      mean = (per[str(shared[0])] if len(shared) == 1  # one seed: its interval is the mean's
              else intervals.paired_difference(a, b, metric))
      out.setdefault(arm, {})[metric] = {"seeds": per, "mean": mean}
  return out


# ---------------------------------------------------------------------------
# Markdown.


def format_interval(d: dict) -> str:
  """'+0.012 [-0.020, +0.044]'."""
  sign = lambda v: "–" if v is None or not np.isfinite(v) else f"{v:+.3f}"
  return f"{sign(d['diff'])} [{sign(d['low'])}, {sign(d['high'])}]"


def differences_table(diffs: dict) -> list:
  """Markdown lines of experiment_differences: per arm and metric, each seed's difference from
  `regular` and the mean over seeds, with 95% paired bootstrap intervals over the test items."""
  if not diffs:
    return []
  seeds = sorted({s for arm in diffs.values() for m in arm.values() for s in m["seeds"]}, key=int)
  lines = ["## Edited arms minus regular", "",
           "Each arm's metric minus `regular`'s from the same warm-up, per seed and their mean, "
           "with 95% percentile bootstrap intervals that resample the test items (the same "
           "resample for both arms and every seed). Word tests: the mean of the categories; "
           "retrieval: R@10; localisation: the share of captions peaking on an object cell; "
           "word_pointing: the share of attribute words pointing at a cell that holds them; "
           "semantic_pairwise_word (the renders' world): the one-attribute pairs scored on the "
           "changed word's frames only.", "",
           "| arm | metric | " + " | ".join(f"seed {s}" for s in seeds) + " | mean over seeds |",
           "| --- " * (3 + len(seeds)) + "|"]
  for arm, metrics in diffs.items():
    for metric, d in metrics.items():
      cells = [format_interval(d["seeds"][s]) if s in d["seeds"] else "–" for s in seeds]
      lines.append(f"| {arm} | {metric} | " + " | ".join(cells)
                   + f" | {format_interval(d['mean'])} |")
  return lines + [""]


def format_value(v) -> str:
  """A number for the tables: counts (ints) as they are, the rest with 3 decimals."""
  if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
    return str(v)
  return "–" if v is None or not np.isfinite(v) else f"{v:.3f}"


def format_aggregate(a: dict, runs: int) -> str:
  """'mean ± std', or the mean alone from one value; '(n=k)' when fewer than the group's runs."""
  text = format_value(a["mean"])
  if a["n"] > 1:
    text += f" ± {format_value(a['std'])}"
  return text + (f" (n={a['n']})" if 0 < a["n"] < runs else "")


def metric_columns(name: str, results: dict, runs) -> list:
  """The evaluator's headline metrics (all of them for one not in HEADLINE) some run has."""
  have = set().union(*(results[r].get(name, {}) for r in runs))
  return [m for m in (HEADLINE.get(name) or sorted(have)) if m in have]


def chance_of(metric: str, numbers: dict):
  """The chance level of a headline metric from an evaluator's flattened numbers (each evaluator
  writes its own: `chance_<metric>`, `chance_r<k>` for recall at k, `chance` for a word test's
  categories and mean), or None where it has none."""
  tail = metric.rsplit("/", 1)[-1]
  for key in (f"chance_{metric}", f"chance_{tail}", f"chance_{metric.split('_')[-1]}",
              f"chance_categories/{tail}"):
    if key in numbers:
      return numbers[key]
  if metric.startswith("pairwise"):
    return numbers.get("chance_pairwise")
  if metric.startswith("categories/") and f"chance/{tail}" in numbers:  # per category (probe)
    return numbers[f"chance/{tail}"]
  if metric == "mean" or metric.startswith("categories/"):
    return numbers.get("chance")
  return None


def evaluator_table(name: str, results: dict, evals: dict, runs) -> list:
  """Markdown lines: one row per group of seeds (mean ± std) followed by its runs, then the
  other runs, then the chance level of each metric that has one; a run's checkpoint, or why it
  has no numbers (skipped, or an empty test: the note under the table says why)."""
  cols = metric_columns(name, results, runs)
  lines = [f"## {name}", ""] + ([DESCRIPTIONS[name], ""] if name in DESCRIPTIONS else []) + [
      "| run | seeds | checkpoint | " + " | ".join(COLUMN_LABELS.get(c, c) for c in cols) + " |",
           "| --- " * (3 + len(cols)) + "|"]
  groups = group_seeds(runs)
  grouped = {r for members in groups.values() for r in members}
  notes = []
  order = list(groups.items()) + [(None, [r]) for r in runs if r not in grouped]
  for base, members in order:
    if base is not None:
      agg = results["_groups"][base].get(name, {})
      n = sum(name in results[r] for r in members)
      cells = [format_aggregate(agg[m], n) if m in agg else "–" for m in cols]
      lines.append(f"| **{base}** (mean ± std) | {n} | – | " + " | ".join(cells) + " |")
    for run in members:
      d = evals[run].get(name)
      if d is None:
        where = "not evaluated"
      elif "skipped" in d:
        where = "skipped"
        notes.append(f"- {run}: {d['skipped']}")
      elif "empty" in d:
        where = f"{d.get('checkpoint', '?')} (step {d.get('step', '?')}), empty"
        notes.append(f"- {run}: {d['empty']}")
      else:
        where = f"{d.get('checkpoint', '?')} (step {d.get('step', '?')})"
      metrics = results[run].get(name, {})
      cells = [format_value(metrics.get(m)) for m in cols]
      lines.append(f"| {run} | 1 | {where} | " + " | ".join(cells) + " |")
  numbers = next((flatten_metrics(evals[r][name]) for r in runs
                  if "skipped" not in evals[r].get(name, {"skipped": 1})), {})
  chances = [chance_of(m, numbers) for m in cols]
  if any(c is not None for c in chances):
    lines.append("| *chance* | | | " + " | ".join(
        "" if c is None else format_value(c) for c in chances) + " |")
  return lines + ([""] + notes if notes else []) + [""]


def pipeline_table(times: dict) -> list:
  """Markdown lines: the wall time of each recorded stage, in the order first run; then, where the
  train stage recorded them (`train_runs`), each run's training time by part."""
  stages = [s for s, v in times.items() if not isinstance(v, dict)]
  lines = ["## Pipeline wall time", "", "| stage | seconds |", "| --- | --- |"]
  lines += [f"| {s} | {times[s]:.1f} |" for s in stages]
  lines += ([f"| total | {sum(times[s] for s in stages):.1f} |"] if stages else []) + [""]
  runs = times.get("train_runs") or {}
  parts = [p for p in TRAIN_PARTS if any(f"{p}_s" in r for r in runs.values())]
  if runs:
    lines += ["Where each run's training time went (seconds; the last time it trained): the "
              "compiled step, the loader, validation, checkpoints, the first step's compilation, "
              "the set-up before it, example images and concept recomputations where a run has "
              "them, and the time no part claimed (other).", "",
              "| run | steps | " + " | ".join(parts) + " | total |",
              "| --- | --- | " + " | ".join("---" for _ in parts) + " | --- |"]
    lines += [f"| {name} | {r.get('steps', '–')} | "
              + " | ".join(f"{r[f'{p}_s']:.1f}" if f"{p}_s" in r else "–" for p in parts)
              + f" | {r['total_s']:.1f} |" for name, r in runs.items()]
    lines += [""]
  return lines


TRAIN_PARTS = ("step", "loader", "validation", "checkpoint", "compile", "setup", "images",
               "concepts", "other")


# ---------------------------------------------------------------------------
# Figures.


def heat_maps(img, aud, n_frames, cosine: bool = False):
  """img [N,h,w,D], aud [W,T,D], n_frames [W] -> [N,W,h,w]: per image and word, the max over the
  word's valid frames of the matchmap (at least one frame counts, as negatives.mask_invalid_frames
  does)."""
  if cosine:
    img, aud = matchmap.normalize_features(img), matchmap.normalize_features(aud)
  mm = jnp.einsum("nyxd,wtd->nwyxt", img, aud)  # w: word, x: column
  t = aud.shape[1]
  valid = jnp.arange(t)[None, :] < jnp.clip(n_frames, 1, t)[:, None]  # [W, T]
  return jnp.max(jnp.where(valid[None, :, None, None, :], mm, -jnp.inf), axis=-1)


@functools.partial(nnx.jit, static_argnames=("cosine",))
def word_heat(models, images, aud, frames, cosine: bool):
  """heat maps [N,W,h,w] of images [N,R,R,3] in [-1, 1] against W spoken words' features aud
  [W,T',D] with valid frames [W] (attributes.embed_words: each word encoded at its own length)."""
  return heat_maps(models.image(images), aud, frames, cosine)


def normalise_per_image(heat) -> np.ndarray:
  """heat [N,W,h,w] -> [0, 1]: negatives clipped, each image divided by its largest value."""
  heat = np.maximum(np.asarray(heat, np.float64), 0.0)
  top = heat.max(axis=(1, 2, 3), keepdims=True)
  return heat / np.where(top > 0, top, 1.0)


def cell_scale(resolution: int) -> int:
  """Upscaling that makes each image of a figure at least 64 px wide (room for a label)."""
  return max(1, -(-64 // resolution))


def labelled_grid(cells: np.ndarray, labels) -> np.ndarray:
  """uint8 cells [rows, cols, R, R, 3] -> one grid image with the columns named."""
  rows, cols, r = cells.shape[:3]
  scale = cell_scale(r)
  grid = figures.make_grid(cells.reshape((rows * cols,) + cells.shape[2:]), cols=cols, scale=scale)
  return figures.label_columns(grid, labels, stride=(r + 1) * scale, offset=scale)


def negatives_figure(positives, negatives, masks) -> np.ndarray:
  """positives, negatives [N,R,R,3] in [-1,1], masks [N,R,R] in {0,1} -> positive | negative |
  mask rows."""
  mask_rgb = np.repeat(np.asarray(masks, np.float32)[..., None] * 2.0 - 1.0, 3, axis=-1)
  cells = figures.to_uint8(np.stack([np.asarray(positives), np.asarray(negatives), mask_rgb], 1))
  return labelled_grid(cells, ("positive", "negative", "mask"))


def words_figure(images, heat) -> np.ndarray:
  """images [N,R,R,3] in [-1,1], heat [N,W,h,w] in [0,1] -> rows of: the image, then each word's
  heat map over it (attributes.WORDS order)."""
  pictures = figures.to_uint8(images)
  n, w = heat.shape[:2]
  overlays = figures.overlay_heat(np.repeat(pictures, w, axis=0),
                                  heat.reshape((n * w,) + heat.shape[2:]))
  cells = np.concatenate([pictures[:, None], overlays.reshape((n, w) + pictures.shape[1:])], 1)
  return labelled_grid(cells, ("image",) + tuple(attributes.WORDS[:w]))


def read_run_scalars(workdir: str, runs) -> dict:
  """{run: {tag: (steps, values)}} from each run's TensorBoard log (writers.read_scalars)."""
  return {run: writers.read_scalars(wd.path(workdir, "runs", run, "tensorboard")) for run in runs}


def curve_figures(scalars: dict, chance: dict | None = None) -> dict:
  """{tag: line plot of every run that logged it} for the CURVE_TAGS that some run logged;
  scalars: read_run_scalars' output; chance: {tag: chance level, or {run: level}} drawn as a
  dashed line (per run in its colour)."""
  chance = chance or {}
  out = {}
  for tag in CURVE_TAGS:
    series = {run: s[tag] for run, s in scalars.items() if tag in s}
    if series:
      title, ylabel = CURVE_LABELS.get(tag, (tag, ""))
      out[tag] = figures.line_plot(series, title, chance=chance.get(tag), ylabel=ylabel)
  return out


def loss_chances(workdir: str, runs) -> dict:
  """{run: the loss of a model that scores every pair alike} from each run's kept config (runs
  without one are left out): different loss kinds start from different levels."""
  out = {}
  for run in runs:
    try:
      c = trained_run.read_run_config(wd.path(workdir, "runs", run))
    except errors.MissingError:
      continue
    out[run] = losses.chance_loss(c.loss.kind, int(c.data.batch_size), float(c.loss.margin),
                                  c.loss.base, float(c.loss.temperature))
  return out


def interval_figures(diffs: dict) -> dict:
  """{metric: each arm's mean difference from regular over seeds with its interval}."""
  metrics = {m for arm in diffs.values() for m in arm}
  return {m: figures.interval_plot({arm: (d[m]["mean"]["diff"], d[m]["mean"]["low"],
                                          d[m]["mean"]["high"])
                                    for arm, d in diffs.items() if m in d},
                                   f"{m}: arm minus regular (95% interval)")
          for m in sorted(metrics)}


def negatives_table(scalars: dict) -> list:
  """Markdown lines: per run that drew negatives, the mean over its logged steps of each
  NEGATIVE_STATS (accepted fraction, tries an accepted sample took, mask area, ...)."""
  runs = [r for r, s in scalars.items() if f"neg/{NEGATIVE_STATS[0]}" in s]
  if not runs:
    return []
  lines = ["## Drawn negatives in training", "",
           "Means over each run's logged steps (negatives.draw_negatives): the fraction of samples "
           "with an accepted negative (the others add no edited term), the tries an accepted one "
           "took, the ablation mask's share of the image, the relative change inside it, the "
           "chosen p or unit count, and the candidate tries rendered per sample (runs before "
           "the work queue rendered every try).", "",
           "| run | " + " | ".join(NEGATIVE_STATS) + " |",
           "| --- " * (1 + len(NEGATIVE_STATS)) + "|"]
  for run in runs:
    series = [scalars[run].get(f"neg/{k}") for k in NEGATIVE_STATS]
    cells = [format_value(float(np.mean(s[1])) if s is not None and len(s[1]) else None)
             for s in series]
    lines.append(f"| {run} | " + " | ".join(cells) + " |")
  lines.append("")
  for run in runs:  # an edited run that never drew an accepted negative trained as regular
    rates = scalars[run][f"neg/{NEGATIVE_STATS[0]}"][1]
    if len(rates) and np.max(rates) == 0:
      lines += [f"**Warning:** `{run}` drew no accepted negative at any logged step, so it "
                "trained as `regular` does.", ""]
  return lines


def random_units(config):
  """A copy of config whose negatives are drawn with random units (draw_examples' config)."""
  c = config.copy_and_resolve_references()
  c.negatives.mode = "random"
  return c


def read_captions(data_dir: str, split: str, ids) -> list:
  """Caption texts of the pairs `ids` among the first len(ids) of the split ('' if not found)."""
  src = input_pipeline.open_source(data_dir, split)
  records = src.__getitems__(list(range(min(len(src), len(ids)))))
  text = {int(r["id"]): r["text"] for r in records}
  decode = lambda t: t.decode() if isinstance(t, bytes) else str(t)
  return [decode(text.get(int(i), "")) for i in ids]


def run_figures(config, workdir: str, runs, folder: str | None) -> list:
  """Draws each run's negatives and word heat maps into folder/figures (folder None: not
  written, on processes other than the first); returns the report's lines about them."""
  data_dir = wd.dataset_dir(config, workdir)
  if data_dir is None or wd.generator_dir(config, workdir) is None:
    return ["No figures of drawn negatives or words: the workdir has no dataset or no generator "
            "(run --mode=build_data).", ""]
  # One device holds the generator and each run's encoders (restored weights keep the trainer's
  # sharding; the jitted passes below need them beside the examples), as in --mode=eval.
  one = mesh_lib.make_mesh(jax.local_devices()[:1])
  g = wd.load_generator(config, workdir)
  mesh_lib.replicate(g, one)
  split = config.evals.split
  data = input_pipeline.load_eval_arrays(data_dir, split, config.data.eval_frames, EXAMPLES)
  captions = read_captions(data_dir, split, data["id"])
  stored = config.data.positives == "stored"
  z = jnp.asarray(gen_lib.latent_table(wd.load_latents(config, workdir),
                                       1 + int(data["z_index"].max()), g.sizes[0]))[
                                           np.maximum(data["z_index"], 0)]
  pictures = (encoders.to_float(jnp.asarray(data["image"])) if stored
              else encoders.draw_positives(g, z, config.negatives.layer)[0])
  spec, n_frames = jnp.asarray(data["spec"]), jnp.asarray(data["n_frames"])
  voice = tuple(config.evals.attributes.voices)[:1]
  word_specs = attributes.speak_words(voice)
  key = jax.random.key(int(config.evals.seed))
  draw = nnx.jit(functools.partial(drawing.draw_examples, config=random_units(config)))
  cosine = bool(config.model.cosine)
  lines = ["## Drawn negatives and attribute words", "",
           f"The first {len(z)} pairs of the {split} split. Negatives: random units "
           f"(p from {config.negatives.p}), the same draws for every run. Words: eSpeak NG voice "
           f"{voice[0]}; each heat map is the matchmap's max over the word's frames, divided by "
           "the largest over all words in that image (dark: weak match).", "", "Captions:", ""]
  lines += [f"{i + 1}. {c}" for i, c in enumerate(captions)] + [""]
  for run in runs:
    models, step = wd.load_encoders(config, wd.path(workdir, "runs", run),
                                    config.evals.checkpoint)
    mesh_lib.replicate(models, one)
    models.eval()
    word_aud, word_frames = attributes.embed_words(models, word_specs, int(config.evals.batch_size))
    heat = word_heat(models, pictures, word_aud, word_frames, cosine=cosine)
    lines += [f"### {run} ({config.evals.checkpoint} checkpoint, step {step})", ""]
    if not stored:  # stored positives have no latent to draw negatives from
      lines += [f"![{run}: positive, negative, mask](figures/{run}_negatives.png)", ""]
    lines += [f"![{run}: attribute words](figures/{run}_words.png)", ""]
    if folder is not None and not stored:
      positives, negatives, masks = draw(models, g, z, spec, n_frames, key)
      figures.save_png(os.path.join(folder, "figures", f"{run}_negatives.png"),
                       negatives_figure(positives, negatives, masks))
    if folder is not None:
      figures.save_png(os.path.join(folder, "figures", f"{run}_words.png"),
                       words_figure(pictures, normalise_per_image(heat)))
    loc = read_evals(wd.path(workdir, "runs", run),
                     config.evals.checkpoint).get("localisation", {})
    if "peak_share" in loc:
      lines += [f"![{run}: where captions peak](figures/{run}_peaks.png)", ""]
      if folder is not None:
        figures.save_png(os.path.join(folder, "figures", f"{run}_peaks.png"), figures.cell_maps(
            {"captions' peaks": loc["peak_share"], "images with an object": loc["object_share"]},
            f"{run}: peaks on objects {loc['on_object']:.3f} (chance "
            f"{loc['chance_on_object']:.3f}), on the border {loc['on_border']:.3f}"))
  return lines


def curve_file(tag: str) -> str:
  return f"curve_{tag.replace('/', '_')}.png"


# ---------------------------------------------------------------------------
# The stage.


def evaluator_names(evals: dict) -> list:
  """The evaluators some run has results of: the suite's order, then any others."""
  names = [n for n in suite.EVALUATORS if any(n in e for e in evals.values())]
  return names + sorted({n for e in evals.values() for n in e} - set(names))


def results_tables(workdir: str, runs=None, which: str = "best") -> list:
  """Markdown lines: one table per evaluator of the runs' headline numbers at checkpoint `which`
  (default: every run; the report's tables, also what the pipeline, eval and report modes print
  when they end)."""
  runs = wd.list_runs(workdir) if runs is None else list(runs)
  if not runs:
    return []
  results, evals = collect_results(workdir, runs, which)
  lines = []
  for name in evaluator_names(evals):
    lines += evaluator_table(name, results, evals, runs)
  return lines


def write_report(config, workdir: str) -> str:
  """Writes WORKDIR/report/{report.md, results.json, figures/} for every run with checkpoints;
  returns the path of report.md."""
  start = time.time()
  runs = wd.list_runs(workdir)
  if not runs:
    raise errors.MissingError(f"no runs with checkpoints under {wd.path(workdir, 'runs')}: "
                              "run --mode=train (and --mode=eval) first")
  results, evals = collect_results(workdir, runs, config.evals.checkpoint)
  folder = wd.path(workdir, "report")
  path = os.path.join(folder, "report.md")
  main = jax.process_index() == 0
  figure_lines = run_figures(config, workdir, runs, folder if main else None)
  if not main:
    return path
  scalars = read_run_scalars(workdir, runs)
  recall5 = min(5, int(config.train.val_pairs)) / max(1, int(config.train.val_pairs))
  loc = {run: evals[run].get("localisation", {}) for run in runs}
  curves = curve_figures(scalars, {
      "val/score": recall5, "val/A_r5": recall5, "val/I_r5": recall5,
      "loss": loss_chances(workdir, runs),
      # chance as the localisation evaluator measured it on the evaluated images
      "val/peak_object": {r: d["chance_on_object"] for r, d in loc.items() if "chance_on_object" in d},
      "val/peak_border": {r: d["chance_on_border"] for r, d in loc.items() if "chance_on_border" in d}})
  for tag, image in curves.items():
    figures.save_png(os.path.join(folder, "figures", curve_file(tag)), image)
  diffs = experiment_differences(evals)
  for metric, image in interval_figures(diffs).items():
    figures.save_png(os.path.join(folder, "figures", f"intervals_{metric}.png"), image)
  if diffs:
    results["_experiment"] = diffs
  jsonio.write_json(os.path.join(folder, "results.json"), results)
  names = evaluator_names(evals)
  which = str(config.evals.checkpoint)
  lines = ["# Report", "", f"Checkpoint: {'each run' + chr(39) + 's best by validation' if which == 'best' else which} "
           f"(--config.evals.checkpoint); numbers and figures all come from it. What each "
           "metric means, with its chance level: docs/results.md, section \"What each number "
           "means\", in the learning_words repository.", "",
           f"Runs: {', '.join(runs)}. Seeds of one experiment are named <base> "
           "and <base>_seed<k>; a group's row is their mean ± sample std. Every number: "
           "results.json.", ""]
  if not names:
    lines += ["No evaluations yet: run --mode=eval.", ""]
  for name in names:
    lines += evaluator_table(name, results, evals, runs)
  lines += differences_table(diffs)
  lines += [f"![{m}](figures/intervals_{m}.png)" for m in sorted(
      {m for arm in diffs.values() for m in arm})] + ([""] if diffs else [])
  lines += negatives_table(scalars)
  # this report's own time so far (its figures, numbers and intervals), not the previous one's
  times = {**(results["_pipeline_seconds"] or {}), "report": time.time() - start}
  lines += pipeline_table(times) + figure_lines
  lines += ["## Training curves", ""]
  lines += [f"![{tag}](figures/{curve_file(tag)})" for tag in curves] or ["No training logs."]
  files.write_bytes(path, ("\n".join(lines) + "\n").encode())
  return path
