"""workdir.py: the layout's paths, which URL workdirs are refused, and what finds the stages'
output."""
import os
import sys

import pytest

from configs import tiny
from learning_words import workdir as wd
from learning_words.common import errors


def test_paths_follow_the_documented_layout(tmp_path):
  w = str(tmp_path)
  assert wd.path(w, "runs", "regular", "eval") == os.path.join(w, "runs", "regular", "eval")
  assert wd.path(w, "pipeline_times.json") == os.path.join(w, "pipeline_times.json")
  with pytest.raises(ValueError, match="not a workdir entry"):
    wd.path(w, "checkpoints")
  cache = wd.cache_dir(w, os.path.join("x", "data", "audio_clevrgan", "cfg", "1.0.0"), 3)
  assert cache == os.path.join(w, "eval_cache", "audio_clevrgan_cfg_1.0.0_3")


@pytest.mark.parametrize("url", ["s3://b/x", "memory://lw", "file:///tmp/lw", "GS://b/x"])
def test_other_url_workdirs_are_refused_naming_the_flag(url):
  scheme = url.split(":")[0]
  with pytest.raises(errors.ConfigError, match=f"^--workdir={url}: {scheme}:// is not supported"):
    wd.check(url)


@pytest.mark.parametrize("missing", ["gcsfs", "google.cloud.storage"])
def test_bucket_workdirs_without_the_extra_name_what_to_install(missing, monkeypatch):
  monkeypatch.setitem(sys.modules, missing, None)  # what `import` of an absent package raises
  with pytest.raises(errors.ConfigError) as e:
    wd.check("gs://bucket/lw")
  assert str(e.value) == ("--workdir=gs://bucket/lw: gs:// needs gcsfs and google-cloud-storage, "
                          "which are not installed here: pip install 'learning_words[gcs]'")


def test_local_and_bucket_workdirs_are_accepted(tmp_path):
  for w in (str(tmp_path), "workdir", "./runs/a:b", "/mnt/lw", "gs://bucket/lw"):
    wd.check(w)


def test_runs_and_datasets_are_found_only_when_there(tmp_path):
  w = str(tmp_path)
  c = tiny.get_config()
  assert wd.list_runs(w) == [] and wd.dataset_dir(c, w) is None
  for run, has in (("b", True), ("a", True), ("c", False)):
    os.makedirs(wd.path(w, "runs", run, os.path.join("checkpoints", "3") if has else "tensorboard"))
  os.makedirs(wd.path(w, "runs", "d", "checkpoints"))  # stopped before its first save
  assert wd.list_runs(w) == ["a", "b"]
  with pytest.raises(errors.MissingError, match="--mode=build_data"):
    wd.require_dataset(c, w)
  with pytest.raises(errors.MissingError, match="--mode=train_gan"):
    wd.load_generator(c, w)  # tiny: 16 px, no shipped generator
  assert wd.load_segmenter(c, w, required=False) is None
  c.data.source = "web"
  with pytest.raises(errors.ConfigError, match="--config.data.source"):
    wd.dataset_dir(c, w)


def test_the_shipped_inverter_counts_only_for_its_own_generator(tmp_path, monkeypatch):
  from learning_words.common import assets, checkpoints, jsonio  # pylint: disable=g-import-not-at-top
  c = tiny.get_config()
  monkeypatch.setattr(assets, "ASSETS_DIR", str(tmp_path / "assets"))
  workdir = str(tmp_path / "wd")
  gen = os.path.join(workdir, "gan", "generator_ema")
  os.makedirs(gen)
  with open(os.path.join(gen, checkpoints.FINGERPRINT), "w") as f:
    f.write("abc123")
  g_print = checkpoints.fingerprint_folders(gen)
  trained = os.path.join(workdir, "data", "inverter", g_print)
  assert wd.inverter_dir(c, workdir) == (None, trained)  # nothing shipped or trained yet
  shipped = assets.shipped_dir("inverter", c)
  os.makedirs(shipped)
  jsonio.write_json(os.path.join(shipped, "provenance.json"), {"generator_fingerprint": "other"})
  assert wd.inverter_dir(c, workdir) == (None, trained)  # shipped for another generator
  os.makedirs(trained)
  assert wd.inverter_dir(c, workdir) == (trained, trained)
  jsonio.write_json(os.path.join(shipped, "provenance.json"), {"generator_fingerprint": g_print})
  assert wd.inverter_dir(c, workdir) == (shipped, trained)
