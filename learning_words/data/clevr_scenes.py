"""`clevr_scenes`: rendered CLEVR-like scenes with ground-truth attribute maps (GAN + segmenter
data).

Each record: `id`, `image` uint8 [R,R,3], `object_id` and the four attribute maps uint8 [R,R]
(1 + vocabulary index, 0 = background; see world/scenes.py) and `scene` (JSON description of the
visible objects). Scene i is a function of (seed, i), so splits are id ranges: train [0, n_train),
val [n_train, n_train + n_val). A `val_only` build renders the same val ids and no train split:
what the world report reads when the generator and the segmenter need no training. The renderer
(world.scenes.render_scenes) is passed in by the render stage: reading a built dataset needs no
renderer.
"""
import json

import numpy as np
import tensorflow_datasets as tfds

from learning_words.data import records
from learning_words.data.vocabulary import ATTRIBUTES

_RENDER_CHUNK = 1000


class ClevrScenesConfig(tfds.core.BuilderConfig):
  """Which scenes to render; the name encodes every parameter so variants never collide."""

  def __init__(self, *, resolution, num_train, num_val, min_objects, max_objects, seed,
               val_only=False):
    name = (f"r{resolution}_n{num_train}_{num_val}_k{min_objects}_{max_objects}_s{seed}"
            + ("_valonly" if val_only else ""))
    super().__init__(name=name, description=f"{resolution} px CLEVR-like renders")
    self.resolution = resolution
    self.num_train = num_train
    self.num_val = num_val
    self.min_objects = min_objects
    self.max_objects = max_objects
    self.seed = seed
    self.val_only = val_only


class ClevrScenes(records.Builder):
  """Rendered scenes; built offline in vectorised numpy by `render(num, seed, resolution,
  min_objects, max_objects, start=) -> (arrays, descriptions, _)`."""

  VERSION = tfds.core.Version("1.0.0")

  def __init__(self, *, render=None, **kwargs):
    super().__init__(**kwargs)
    self.render = render

  def _info(self) -> tfds.core.DatasetInfo:
    r = self.builder_config.resolution
    grid = lambda: tfds.features.Tensor(shape=(r, r), dtype=np.uint8)
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            "id": np.int64,
            "image": tfds.features.Tensor(shape=(r, r, 3), dtype=np.uint8),
            "object_id": grid(),
            **{name: grid() for name in ATTRIBUTES},
            "scene": tfds.features.Text(),
        }))

  def _split_generators(self, dl_manager):
    cfg = self.builder_config
    splits = {} if cfg.val_only else {"train": self._generate_examples(0, cfg.num_train)}
    return {**splits, "val": self._generate_examples(cfg.num_train, cfg.num_val)}

  def _generate_examples(self, start, num):
    cfg = self.builder_config
    for chunk_start in range(start, start + num, _RENDER_CHUNK):
      n = min(_RENDER_CHUNK, start + num - chunk_start)
      arrays, descriptions, _ = self.render(
          n, cfg.seed, cfg.resolution, cfg.min_objects, cfg.max_objects, start=chunk_start)
      for j in range(n):
        i = chunk_start + j
        yield i, {
            "id": i,
            "image": arrays["image"][j],
            "object_id": arrays["object_id"][j],
            **{name: arrays[name][j] for name in ATTRIBUTES},
            "scene": json.dumps(descriptions[j]),
        }


def load_arrays(data_dir: str, split: str, keys=("image",)) -> dict:
  """{key: stacked array} of a built split, in id order (the dataset is small: kept in memory)."""
  src = tfds.builder_from_directory(data_dir).as_data_source(split)
  recs = src.__getitems__(list(range(len(src))))
  order = np.argsort([int(r["id"]) for r in recs])
  return {k: np.stack([np.asarray(recs[i][k]) for i in order]) for k in keys}


def make_builder(config, data_dir: str, render=None, val_only: bool = False) -> ClevrScenes:
  """The builder for `config.world` under `data_dir` (WORKDIR/data); `render` to build it;
  `val_only`: the val split alone (the same scenes as the full build's)."""
  w = config.world
  return ClevrScenes(
      config=ClevrScenesConfig(
          resolution=w.resolution, num_train=w.num_train, num_val=w.num_val,
          min_objects=w.min_objects, max_objects=w.max_objects, seed=config.seed,
          val_only=val_only),
      render=render, data_dir=data_dir, file_format="array_record")
