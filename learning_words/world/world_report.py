"""The world's quality report: can the GAN draw the world, and can its edits draw negatives?

Written by build_data to WORKDIR/data/world_report.{md,json} with PNG figures:
- the fraction of generated images parsed into at least one object;
- per attribute, the distribution of parsed objects' values against the renders' (visible objects
  of the val renders), as a total variation distance (gate: colour TV <= 0.1);
- edit diagnostics per candidate intervention layer: on generated images, ablate random units
  (p in [0.4, 0.8]) inside one parsed object's mask (binary at the layer's resolution, any
  overlap) and measure (a) locality = mean |change| inside the mask / outside, (b) per attribute,
  the fraction of edits after which the segmenter reads another value for that object (and how
  often the object disappears).
"""
import os

import jax.numpy as jnp
import numpy as np
from etils import epy
with epy.lazy_imports():  # imported at first use: start-up time
  from scipy import ndimage

from learning_words.common import figures, files, jsonio
from learning_words.data import vocabulary

GATES = {"parsed_fraction": 0.9, "tv_color": 0.1}


def attribute_histograms(descriptions: list[dict]) -> dict[str, np.ndarray]:
  """Per attribute, the normalised histogram of the objects' values (vocabulary order)."""
  out = {}
  for attr, vocab in vocabulary.VOCAB.items():
    counts = np.zeros(len(vocab))
    for d in descriptions:
      for o in d["objects"]:
        counts[vocab.index(o[attr])] += 1
    out[attr] = counts / max(counts.sum(), 1)
  return out


def tv_distance(p: np.ndarray, q: np.ndarray) -> float:
  return 0.5 * float(np.abs(p - q).sum())


def mask_to_layer(mask: np.ndarray, side: int) -> np.ndarray:
  """Binary pixel masks [B, R, R] -> binary [B, side, side]: a cell is on if any pixel in it is."""
  b, r, _ = mask.shape
  k = r // side
  return mask.reshape(b, side, k, side, k).max(axis=(2, 4))


def largest_object_masks(maps: dict) -> np.ndarray:
  """Per image, the pixel mask [R, R] of its largest connected same-attribute object."""
  joint = np.zeros(maps["shape"].shape, np.int64)
  for attr in vocabulary.ATTRIBUTES:
    joint = joint * 16 + maps[attr]
  out = np.zeros(joint.shape, bool)
  for i in range(len(joint)):
    fg = maps["shape"][i] > 0
    labels, n = ndimage.label(fg)
    if n:
      sizes = np.bincount(labels.ravel())[1:]
      out[i] = labels == 1 + int(np.argmax(sizes))
  return out


def majority(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Per image, the most frequent label inside the mask. labels, mask: [B, R, R]."""
  return np.array([np.bincount(l[m]).argmax() if m.any() else 0 for l, m in zip(labels, mask)])


def edit_diagnostics(g, seg_predict, z: np.ndarray, layer: str, seed: int) -> dict:
  """Locality and attribute-change rates of random-unit ablations inside one object per image."""
  x = jnp.asarray(z)
  images = g(x)
  maps = {k: np.asarray(v) for k, v in seg_predict(images).items()}
  masks = largest_object_masks(maps)
  has = masks.any(axis=(1, 2))
  h, w, c = g.features(x[:1], [layer])[layer].shape[1:]
  rng = np.random.default_rng(seed)
  p = rng.uniform(0.4, 0.8, size=(len(z), 1))
  units = (rng.random((len(z), c)) < p).astype(np.float32)
  cells = mask_to_layer(masks, h).astype(np.float32)
  a = jnp.asarray(cells[:, :, :, None] * units[:, None, None, :])
  edited = g(x, {layer: (a, jnp.zeros(c))})
  change = np.abs(np.asarray(edited) - np.asarray(images)).mean(-1)   # [B, R, R]
  inside = np.array([ch[m].mean() if m.any() else np.nan for ch, m in zip(change, masks)])
  outside = np.array([ch[~m].mean() if (~m).any() else np.nan for ch, m in zip(change, masks)])
  new_maps = {k: np.asarray(v) for k, v in seg_predict(edited).items()}
  out = {"layer": layer, "images": int(has.sum()),
         "locality": float(np.nanmean(inside[has]) / max(np.nanmean(outside[has]), 1e-8))
         if has.any() else float("nan")}
  gone = majority(new_maps["shape"], masks) == 0
  out["vanished"] = float(gone[has].mean())
  for attr in vocabulary.ATTRIBUTES:
    before, after = majority(maps[attr], masks), majority(new_maps[attr], masks)
    out[f"changed_{attr}"] = float(((before != after) & ~gone)[has].mean())
  return out, figures.to_uint8(np.concatenate([np.asarray(images[:8]), np.asarray(edited[:8])]))


def write_report(path_prefix: str, report: dict, grid_images: np.ndarray, grid_texts: list[str],
                 edit_grids: dict):
  """world_report.json / .md and the PNG figures next to them."""
  folder = os.path.dirname(path_prefix)
  jsonio.write_json(path_prefix + ".json", report)
  figures.save_png(os.path.join(folder, "world_samples.png"),
                   figures.make_grid(grid_images, cols=8, scale=4))
  for layer, grid in edit_grids.items():
    figures.save_png(os.path.join(folder, f"world_edits_{layer}.png"),
                     figures.make_grid(grid, cols=8, scale=4))
  lines = ["# World report", "", f"Parsed fraction: {report['parsed_fraction']:.3f} "
           f"(gate >= {GATES['parsed_fraction']})", "",
           "| attribute | TV distance to renders |", "| --- | --- |"]
  lines += [f"| {a} | {report['tv'][a]:.3f} |" for a in vocabulary.ATTRIBUTES]
  counts = report["objects_per_image"]
  lines += ["", f"Objects per parsed image: {counts['generated']:.2f} generated, "
            f"{counts['renders']:.2f} in the renders.", "",
            f"Gates passed: {report['gates_passed']}", "",
            "## Edits (random units, p in [0.4, 0.8], inside one object's mask)", "",
            "| layer | locality (in/out) | vanished | " +
            " | ".join(f"{a} changed" for a in vocabulary.ATTRIBUTES) + " |",
            "| --- " * (3 + len(vocabulary.ATTRIBUTES)) + "|"]
  for e in report["edits"]:
    lines.append(f"| {e['layer']} | {e['locality']:.1f} | {e['vanished']:.2f} | " +
                 " | ".join(f"{e['changed_' + a]:.2f}" for a in vocabulary.ATTRIBUTES) + " |")
  lines += ["", "![samples](world_samples.png)", "", "Captions of the first samples:", ""]
  lines += [f"{i}. {t}" for i, t in enumerate(grid_texts)]
  files.write_bytes(path_prefix + ".md", ("\n".join(lines) + "\n").encode())
