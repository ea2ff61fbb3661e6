"""The official files end to end: an official-layout fixture whose images a converted random
reference generator drew (id i = G(z_i), z_i row i of RandomState(1)); build_data converts the
generator (its widths from the file, not the config), checks it against the images, and a few
`negatives_edited` steps and the evaluators run on it. Drawn with another z seed, the check fails
with a message that says so."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from configs import tiny
from learning_words import benchmark, pipeline, workdir as wd
from learning_words.common import errors, figures
from learning_words.convert import torch_files, reference_generator as ref_gen
from learning_words.data import input_pipeline
from learning_words.models import encoders, generator as gen_lib
from tests.conftest import ROOT
from tests.convert.reference_generator_test import reference_file

SIZES = (16, 16, 12, 8)  # 16 px; the tiny config says (16, 16, 16, 8): the file's widths win


def drawn_layout(official_layout, root, weights, z_seed):
  """A copy of the fixture whose images/<i>.jpg are G(z_i) of the reference file `weights`."""
  shutil.copytree(official_layout[0], root)
  # 10 more train ids (the captions of the first ones again): 16, two batches of 8 (8 devices).
  train = [int(i) for i in open(os.path.join(root, "name_list_train.txt")).read().split()]
  for k, new in enumerate(range(100, 110)):
    for sub, ext in (("audio", "wav"), ("text", "txt")):
      shutil.copy(os.path.join(root, sub, f"{train[k % len(train)]}.{ext}"),
                  os.path.join(root, sub, f"{new}.{ext}"))
  with open(os.path.join(root, "name_list_train.txt"), "w") as f:
    f.write("\n".join(str(i) for i in train + list(range(100, 110))) + "\n")
  Image.new("RGB", (16, 16)).save(os.path.join(root, "images", "100.jpg"))  # redrawn below
  for new in range(101, 110):
    shutil.copy(os.path.join(root, "images", "100.jpg"), os.path.join(root, "images", f"{new}.jpg"))
  g = ref_gen.to_generator(torch_files.read_state_dict(weights))
  ids = sorted(int(f[:-4]) for f in os.listdir(os.path.join(root, "images")))
  z = gen_lib.standard_z(max(ids) + 1, SIZES[0], seed=z_seed)[ids]
  for i, image in zip(ids, figures.to_uint8(encoders.generate(g, z))):
    Image.fromarray(image).save(os.path.join(root, "images", f"{i}.jpg"), quality=95)
  return root


def official_config(root, weights):
  c = tiny.get_config()
  c.data.source, c.data.official_dir = "official", root
  c.gan.official_weights = weights
  c.loss.kind = "negatives_edited"
  c.data.batch_size, c.train.val_pairs, c.train.epochs = 8, 2, 1
  c.negatives.threshold = 0.2
  c.evals.names = ("retrieval", "edited_recall")
  c.evals.retrieval.n_pairs = c.evals.edited_recall.captions = 2
  return c


def _main(*args):
  r = subprocess.run([sys.executable, "-m", "learning_words.main", "--config=configs/tiny.py",
                      *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  return r


def _modes_through_main(root, weights, work):
  """train, eval and report as a user runs them (official_config's overrides as flags): each
  ends with its numbers and their chance levels, and says why a cell is missing; an edited run
  whose negatives are never accepted warns in one line and in the report."""
  flags = [f"--workdir={work}", "--config.data.source=official", f"--config.data.official_dir={root}",
           f"--config.gan.official_weights={weights}", "--config.loss.kind=negatives_edited",
           "--config.data.batch_size=8", "--config.train.val_pairs=2", "--config.train.epochs=1",
           "--config.evals.retrieval.n_pairs=2", "--config.evals.edited_recall.captions=2",
           "--config.evals.names=('retrieval','edited_recall','attributes')"]
  train = _main(*flags, "--mode=train", "--config.negatives.threshold=1e9")
  # 2 validation pairs: R@5 is 1 whatever the model; the triplet loss of a model scoring every
  # pair alike: the margin for each of imp_image, imp_caption and edited.
  assert ("validation score 1.0000 (chance 1.0000;" in train.stdout
          and "(chance 3.000: every pair scored alike)" in train.stdout), train.stdout
  warning = [line for line in train.stderr.splitlines() if "no drawn negative" in line]
  assert len(warning) == 1 and warning[0].startswith("WARNING: negatives_edited: ")
  assert "2/2" in train.stderr  # the bar ends at the finished step count (16 pairs / batch 8)
  ev = _main(*flags, "--mode=eval").stdout
  assert "Results on the test split" in ev and "## retrieval" in ev
  # chance of R@1, R@5, R@10 among 2 pairs, for A and I; of edited R@1 / R@5 among 10 images
  assert "| *chance* | | | 0.500 | 1.000 | 1.000 | 0.500 | 1.000 | 1.000 |" in ev, ev
  assert "| *chance* | | | 0.100 | 0.500 |" in ev
  assert "- negatives_edited: no attribute segmenter" in ev  # the skipped cell says why
  rep = _main(*flags, "--mode=report").stdout
  assert "## retrieval" in rep and "| *chance* |" in rep
  with open(os.path.join(work, "report", "report.md")) as f:
    assert "**Warning:** `negatives_edited` drew no accepted negative" in f.read()


def test_official_files_run_end_to_end(official_layout, tmp_path):
  weights = str(tmp_path / "generator.pth")
  torch.save({"state_dict": reference_file(SIZES, seed=3)}, weights)
  root = drawn_layout(official_layout, str(tmp_path / "official"), weights, z_seed=1)
  c = official_config(root, weights)
  work = str(tmp_path / "work")
  pipeline.run("build_data", c, work)
  assert tuple(c.gan.sizes) == SIZES  # read from the file
  agree = json.load(open(os.path.join(work, "data", "generator_agreement.json")))
  # 4:2:0 JPEG of 16 px colour noise: ~14 dB against the own image, ~8 against another's.
  assert agree["n"] == 16 and agree["gain"] >= c.gan.agreement_min_gain
  assert pipeline.STAGES["train_gan"].existing(c, work) == (
      f"not needed: the reference's generator, converted, is {wd.official_generator_dir(work)}")
  assert pipeline.STAGES["build_data"].existing(c, work) is not None  # checked: not redone
  _modes_through_main(root, weights, work)
  # The benchmark's host-side timings on this workdir: machine-dependent numbers, so their
  # consistency is checked (a kept log-mel is cheaper than a computed one, rates are positive).
  data_dir = wd.dataset_dir(c, work)
  src = input_pipeline.open_source(data_dir, "train")
  feat = benchmark.time_featurise(c, src, n=4)
  assert feat["from_cache_records_per_s"] > feat["from_waveform_records_per_s"] > 0
  loader = benchmark.time_loader(c, src, [0], batches=1)
  assert list(loader) == ["0"] and loader["0"] > 0
  timed = benchmark.time_training(c, work, data_dir, "regular", steps=4)
  assert len(timed["logged_rates"]) == 5 and timed["steps_per_s"] > 0
  got = json.load(open(os.path.join(work, "runs", "negatives_edited", "eval", "eval.json")))
  got = got["results"]
  assert set(got) == {"retrieval", "edited_recall", "attributes"}
  assert all(np.isfinite(v) for v in got["retrieval"].values() if isinstance(v, float))

  # Another file at the same path is converted anew, and the data checked again.
  folder = wd.official_generator_dir(work)
  assert ref_gen.converted_from(folder, weights)
  torch.save(reference_file(SIZES, seed=4), weights)
  assert not ref_gen.converted_from(folder, weights)
  with pytest.raises(errors.InputError, match="disagree"):
    pipeline.run("build_data", c, work)

  # The same files drawn from z of another seed: the check fails and says what to look at.
  wrong = drawn_layout(official_layout, str(tmp_path / "wrong"), weights, z_seed=2)
  c = official_config(wrong, weights)
  with pytest.raises(errors.InputError, match="generator and the data disagree.*another id's image.*RandomState"):
    pipeline.run("build_data", c, str(tmp_path / "work_wrong"))
  assert pipeline.STAGES["build_data"].existing(c, str(tmp_path / "work_wrong")) is None


def test_official_data_without_the_official_generator_is_refused(official_layout, tmp_path):
  c = tiny.get_config()
  c.data.source, c.data.official_dir = "official", official_layout[0]
  for mode in ("pipeline", "train", "eval"):
    with pytest.raises(errors.ConfigError, match="official_weights=generator.pth"):
      pipeline.run(mode, c, str(tmp_path))
