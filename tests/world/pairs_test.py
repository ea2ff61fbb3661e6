"""world/pairs.py's ladder worlds on a tiny config: the renders' pairs against an independent
re-render (images, ground-truth captions, scene ids past the GAN's renders), the inverted worlds'
agreement filter against a rigged segmenter, and the stored scenes read back through TFDS."""
import json

import numpy as np
import pytest
from flax import nnx

from configs import tiny
from learning_words.data import audio_clevrgan, input_pipeline
from learning_words.data.vocabulary import ATTRIBUTES
from learning_words.models import generator as gen_lib
from learning_words.world import captions, pairs, parse, scenes

IDS = np.arange(6)


def _config():
  c = tiny.get_config()
  c.world.relation_prob = 0.0
  return c


def _make(kind, seg_predict=None, latents=None, g=None):
  c = _config()
  c.world.pairs = kind
  return pairs.make_pairs(g, seg_predict, IDS, seed=c.seed, speech_cfg=c.speech,
                          relation_prob=0.0, min_pixels=c.world.parse_min_pixels, kind=kind,
                          world_cfg=c.world, latents=latents, progress=False)


def _names_every_object(text, scene):
  """Every attribute of every object is said with one of its synonyms (materials also as the
  caption's adjective or noun forms)."""
  words = set(text.rstrip(".").split())
  return all(any(s in words for s in captions.SYNONYMS[o[a]] + (
      ("metallic", "shiny", "metal") if o[a] == "metal" else ("matte", "rubber")
      if o[a] == "rubber" else ())) for o in scene["objects"] for a in ATTRIBUTES)


@pytest.fixture(scope="module")
def renders():
  return _make("renders")


def test_renders_are_the_scenes_past_the_gans_with_their_true_captions(renders):
  records, stats = renders
  c = _config()
  first = c.world.num_train + c.world.num_val  # the GAN and the segmenter saw ids below this
  arrays, described, _ = scenes.render_scenes(len(IDS), c.seed, c.world.resolution,
                                              c.world.min_objects, c.world.max_objects,
                                              start=first)
  assert stats == {"generated": len(IDS), "parsed": len(records),
                   "skipped_no_object": len(IDS) - len(records)}
  assert len(records) == sum(bool(d["objects"]) for d in described) > 0
  for r in records:
    i = r["id"]
    np.testing.assert_array_equal(r["image"], arrays["image"][i])
    assert r["scene"] == described[i] and r["z_index"] == -1
    assert _names_every_object(r["text"], described[i])
    assert len(r["text"].split(" and ")) >= 1 and r["waveform"].size > 1000


def test_inverted_world_keeps_ground_truth_only_where_the_segmenter_agrees():
  c = _config()
  g = gen_lib.Generator(c.gan.sizes, rngs=nnx.Rngs(0))
  latents = gen_lib.standard_z(len(IDS), g.sizes[0])
  arrays, described, _ = scenes.render_scenes(
      len(IDS), c.seed, c.world.resolution, c.world.min_objects, c.world.max_objects,
      start=c.world.num_train + c.world.num_val)
  truth_maps = {a: arrays[a] for a in ATTRIBUTES}
  # A segmenter that reads the renders' true maps in G(z*): a scene agrees unless parsing its
  # true maps differs from its description (occlusion can split or hide an object).
  read = parse.parse(truth_maps, c.world.parse_min_pixels)
  bag = lambda s: sorted(tuple(o[a] for a in ATTRIBUTES) for o in s["objects"])
  same = [bag(r) == bag(d) for r, d in zip(read, described)]
  records, stats = _make("inverted", lambda images: truth_maps, latents, g)
  assert stats["skipped_disagree"] == len(IDS) - sum(same) < len(IDS)
  assert [r["scene"] for r in records] == [d for d, k in zip(described, same)
                                           if k and d["objects"]]
  assert [r["z_index"] for r in records] == [r["id"] for r in records]
  np.testing.assert_array_equal(records[0]["image"],
                                pairs.draw_images(g, latents[records[0]["id"]:][:1])[0])
  # One that reads one object less in an agreeing scene k: that pair is dropped too.
  k = same.index(True)
  fewer = {a: m.copy() for a, m in truth_maps.items()}
  slot = arrays["object_id"][k] == arrays["object_id"][k].max()
  for a in ATTRIBUTES:
    fewer[a][k][slot] = 0
  records, stats = _make("inverted", lambda images: fewer, latents, g)
  assert stats["skipped_disagree"] == len(IDS) - sum(same) + 1
  assert k not in [r["id"] for r in records]
  # The parsed world captions what the segmenter read, whatever the truth.
  records, _ = _make("inverted_parsed", lambda images: fewer, latents, g)
  got = {r["id"]: r["scene"] for r in records}
  assert bag(got[k]) == bag(parse.parse(fewer, c.world.parse_min_pixels)[k])
  assert len(got[k]["objects"]) == len(described[k]["objects"]) - 1


def test_agreement_ignores_order_and_positions():
  a = {"objects": [{"shape": "cube", "color": "red", "size": "large", "material": "metal",
                    "x": 0.1}, {"shape": "sphere", "color": "blue", "size": "small",
                                "material": "rubber", "x": 0.7}]}
  b = {"objects": [dict(a["objects"][1], x=0.2), dict(a["objects"][0], x=0.9)]}
  assert pairs.agrees(a, b)
  assert not pairs.agrees(a, {"objects": a["objects"][:1]})
  assert not pairs.agrees(a, {"objects": [a["objects"][0], dict(a["objects"][1], color="red")]})
  with pytest.raises(ValueError, match="world.pairs"):
    pairs.check_pairs("drawn")


def test_stored_scenes_read_back_in_pair_order(renders, tmp_path):
  c = _config()
  c.world.pairs = "renders"
  c.data.num_train, c.data.num_val, c.data.num_test = 3, 2, 1
  split_ids = {0: "train", 3: "val", 5: "test"}
  by_start = {}
  records, _ = renders
  def make_split(start, num):
    by_start[start] = [r for r in records if start <= r["id"] < start + num]
    return by_start[start], {"generated": num}
  builder = audio_clevrgan.make_builder(c, str(tmp_path), "fp", make_split)
  builder.download_and_prepare()
  assert "_renders_" in builder.builder_config.name
  for start, split in split_ids.items():
    want = by_start[start]
    if not want:
      continue
    ids = [r["id"] for r in reversed(want)]
    got = input_pipeline.load_scenes(builder.data_dir, split, ids)
    assert got == [json.loads(json.dumps(r["scene"])) for r in reversed(want)]
