"""Scene description -> English caption, in the style of CLEVR's synthetic captions.

Why: the `synth` variant of Audio CLEVRGAN pairs each image with a caption written from
its scene and spoken by a TTS. Every visible object is named with all four attributes
(so each attribute word can be grounded), using CLEVR's synonyms and a few sentence
templates for variety, plus at most one spatial relation.

Captions are lowercase words separated by spaces, without digits or commas, ending
with a period, so a TTS reads them plainly. The output depends only on the scene and
the state of the numpy Generator passed in.
"""

from __future__ import annotations

# How each attribute value may be spoken (CLEVR's synonyms).
SYNONYMS = {
    'cube': ('cube', 'block'),
    'sphere': ('sphere', 'ball'),
    'cylinder': ('cylinder',),
    'metal': ('metal', 'metallic', 'shiny'),
    'rubber': ('rubber', 'matte'),
    'large': ('large', 'big'),
    'small': ('small', 'tiny'),
    'gray': ('gray',), 'red': ('red',), 'blue': ('blue',), 'green': ('green',),
    'brown': ('brown',), 'purple': ('purple',), 'cyan': ('cyan',), 'yellow': ('yellow',),
}
# Materials as nouns ("a big red ball made of metal") and as adjectives that read well
# before the colour ("a big shiny red ball").
_MATERIAL_NOUNS = {'metal': ('metal',), 'rubber': ('rubber',)}
_MATERIAL_ADJECTIVES = {'metal': ('metallic', 'shiny'), 'rubber': ('matte',)}

_OPENINGS = ('there is {}', 'i see {}', 'the image shows {}', 'this is a picture of {}',
             'in this picture there is {}', 'we can see {}', '{}')
_LAST_JOINS = (' and ', ' and also ', ' as well as ')
_EMPTY = ('there is nothing here', 'the image is empty', 'i see no objects')


def _pick(rng, options):
  """Returns one of `options`, chosen uniformly with the numpy Generator `rng`."""
  return options[int(rng.integers(len(options)))]


def _noun_phrase(obj, rng):
  """Names one object with all four attributes, e.g. 'big red shiny ball' (no article), as
  [(word, attribute it names or None)]."""
  size = (_pick(rng, SYNONYMS[obj['size']]), 'size')
  color = (_pick(rng, SYNONYMS[obj['color']]), 'color')
  shape = (_pick(rng, SYNONYMS[obj['shape']]), 'shape')
  style = rng.random()
  if style < 0.2:
    return [size, color, shape, ('made', None), ('of', None),
            (_pick(rng, _MATERIAL_NOUNS[obj['material']]), 'material')]
  if style < 0.4:
    return [size, (_pick(rng, _MATERIAL_ADJECTIVES[obj['material']]), 'material'), color, shape]
  return [size, color, (_pick(rng, SYNONYMS[obj['material']]), 'material'), shape]


def _with_article(words):
  """Prefixes 'a' or 'an' as English wants before the first word of [(word, tag)]."""
  return [('an' if words[0][0][0] in 'aeiou' else 'a', None)] + words


def _tag(words, index):
  """[(word, tag)] -> [(word, (index, tag) or None)]: the object `index` that each tag names."""
  return [(w, None if t is None else (index, t)) for w, t in words]


def _plain(text):
  return [(w, None) for w in text.split(' ')]


def _relation(objects, rng):
  """Returns one true spatial relation between two different objects as [(word, tag)], or None.

  Left / right compare the centroids' x, in front of / behind compare y (larger y is
  nearer the camera). Ties are not stated.
  """
  first, second = rng.choice(len(objects), size=2, replace=False)
  a, b = objects[first], objects[second]
  axis = 'x' if rng.random() < 0.5 else 'y'
  if a[axis] == b[axis]:
    axis = 'y' if axis == 'x' else 'x'
    if a[axis] == b[axis]:
      return None
  if axis == 'x':
    words = 'to the left of' if a['x'] < b['x'] else 'to the right of'
  else:
    words = 'in front of' if a['y'] > b['y'] else 'behind'
  return (_plain('the') + _tag(_noun_phrase(a, rng), int(first)) + _plain(f'is {words} the')
          + _tag(_noun_phrase(b, rng), int(second)))


def caption(scene, rng, relation_prob=0.5):
  """Writes a caption naming every object of `scene` (a `scenes.describe` entry).

  rng: a numpy Generator (its state alone fixes the words). With probability
  relation_prob, when there are at least two objects, one spatial relation follows as
  a second sentence. Returns lowercase words ending with a period.
  """
  return tagged_caption(scene, rng, relation_prob)[0]


def tagged_caption(scene, rng, relation_prob=0.5):
  """(caption, tags): `caption`'s text (the same words for the same rng state) and, per
  space-separated word, (index of the object in scene['objects'], attribute it names) or None."""
  objects = scene['objects']
  if not objects:
    text = _pick(rng, _EMPTY) + '.'
    return text, [None] * len(text.split(' '))
  phrases = [_tag(_with_article(_noun_phrase(obj, rng)), i) for i, obj in enumerate(objects)]
  listed = phrases[0]
  if len(phrases) > 1:
    for p in phrases[1:-1]:
      listed = listed + _plain('and') + p
    listed = listed + _plain(_pick(rng, _LAST_JOINS).strip()) + phrases[-1]
  opening = _pick(rng, _OPENINGS).split('{}')
  words = _plain(opening[0].strip()) if opening[0] else []
  words = words + listed
  words[-1] = (words[-1][0] + '.', words[-1][1])
  if len(objects) >= 2 and rng.random() < relation_prob:
    relation = _relation(objects, rng)
    if relation is not None:
      words = words + relation
      words[-1] = (words[-1][0] + '.', words[-1][1])
  return ' '.join(w for w, _ in words), [t for _, t in words]
