"""`--mode=build_data` for the synthetic world: the Audio CLEVRGAN pairs and the world report.

Makes the pairs of the configured world (`world.pairs`, pairs.make_pairs: for the reference's
prior samples, G(z_i) read by the segmenter, captioned and spoken), writes the `audio_clevrgan`
dataset, then for the prior samples the world report (world_report.py): parsed fraction,
attribute distributions against the renders', and edit diagnostics per layer; the other worlds
write their build counts to WORKDIR/data/build_<world>.json.
"""
import json
import os
import time

import numpy as np
from absl import logging

from learning_words.common import jsonio
from learning_words.data import audio_clevrgan, clevr_scenes
from learning_words.models import generator as gen_lib
from learning_words.models import segmenter as seg_lib
from learning_words.world import captions, pairs, world_report


def build_synthetic(config, data_dir: str, report_dir: str, scenes_dir: str, g, seg,
                    weights_fingerprint: str, latents=None) -> str:
  """Builds the pairs of the world `config.world.pairs` under data_dir (skipping an existing
  build) and, for the prior samples, writes the world report in report_dir (WORKDIR/data; the
  other worlds their build counts); returns the folder. weights_fingerprint: names the
  build after the weights (and latents) that drew and read the pairs; latents: the inverted
  latents of the inverted worlds (row = pair id)."""
  predict = lambda images: seg_lib.predict(seg, images)
  kind = pairs.check_pairs(config.world.pairs)
  make_split = lambda start, num: pairs.make_pairs(
      g, predict, np.arange(start, start + num), seed=config.seed, speech_cfg=config.speech,
      relation_prob=config.world.relation_prob, min_pixels=config.world.parse_min_pixels,
      kind=kind, world_cfg=config.world, latents=latents,
      variants=bool(config.world.get("edit_variants", False)))
  builder = audio_clevrgan.make_builder(config, data_dir, weights_fingerprint, make_split)
  start = time.time()
  builder.download_and_prepare()
  if builder.stats:  # built now (not reused): report what was skipped and how long it took
    stats = {k: sum(s[k] for s in builder.stats.values())
             for k in next(iter(builder.stats.values()))}
    logging.info("build_data (%s): %s in %.1f s", kind, stats, time.time() - start)
    if kind == "prior":
      write_world_report(config, report_dir, scenes_dir, g, seg, stats, time.time() - start)
    else:
      jsonio.write_json(os.path.join(report_dir, f"build_{kind}.json"),
                        {"pairs": kind, "rung": pairs.RUNG[kind], "build": stats,
                         "per_split": builder.stats, "seconds": round(time.time() - start, 1)})
  return builder.data_dir


def report_ids(data_cfg, n: int) -> np.ndarray:
  """The world report's image ids: past every split, so that choosing a generator on the report
  touches no training, validation or test pair (1,000 ids from num_train on would reach into the
  test split)."""
  first = data_cfg.num_train + data_cfg.num_val + data_cfg.num_test
  return np.arange(first, first + n)


def write_world_report(config, report_dir, scenes_dir, g, seg, stats: dict, seconds: float):
  """The world report of a freshly built dataset (see world_report.py)."""
  predict = lambda images: seg_lib.predict(seg, images)
  ids = report_ids(config.data, config.world.report_images)
  z = gen_lib.standard_z(int(ids.max()) + 1, g.sizes[0])[ids]
  images = pairs.draw_images(g, z)
  parsed = pairs.read_images(predict, images, config.world.parse_min_pixels)
  renders = [json.loads(s) for s in _scene_texts(scenes_dir)]
  hist_gen = world_report.attribute_histograms(parsed)
  hist_ren = world_report.attribute_histograms(renders)
  tv = {a: world_report.tv_distance(hist_gen[a], hist_ren[a]) for a in hist_gen}
  fraction = float(np.mean([bool(p["objects"]) for p in parsed]))
  edits, grids = [], {}
  for layer in config.gan.diagnose_layers:
    e, grid = world_report.edit_diagnostics(g, predict, z[:config.world.report_edits], layer,
                                            config.seed)
    edits.append(e)
    grids[layer] = grid
  report = {
      "build": {**stats, "seconds": round(seconds, 1)},
      "parsed_fraction": fraction, "tv": tv,
      # Over-segmentation check: a GAN object read as several (inconsistent labels) inflates this.
      "objects_per_image": {"generated": float(np.mean([len(p["objects"]) for p in parsed])),
                            "renders": float(np.mean([len(r["objects"]) for r in renders]))},
      "histograms": {"generated": {k: v.tolist() for k, v in hist_gen.items()},
                     "renders": {k: v.tolist() for k, v in hist_ren.items()}},
      "edits": edits,
      "gates_passed": bool(fraction >= world_report.GATES["parsed_fraction"]
                           and tv["color"] <= world_report.GATES["tv_color"]),
  }
  texts = [captions.caption(p, np.random.default_rng([config.seed, i]), 0.0)
           for i, p in enumerate(parsed[:16])]
  world_report.write_report(os.path.join(report_dir, "world_report"), report, images[:64], texts,
                            grids)
  logging.info("world report: parsed %.3f, TV %s, gates passed %s", fraction, tv,
               report["gates_passed"])


def _scene_texts(scenes_dir: str) -> list[str]:
  """The renders' scene descriptions (val split) as JSON strings."""
  return [s.decode() if isinstance(s, bytes) else str(s)
          for s in clevr_scenes.load_arrays(scenes_dir, "val", keys=("scene",))["scene"]]
