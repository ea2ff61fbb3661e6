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
  """Names one object with all four attributes, e.g. 'big red shiny ball' (no article)."""
  size = _pick(rng, SYNONYMS[obj['size']])
  color = _pick(rng, SYNONYMS[obj['color']])
  shape = _pick(rng, SYNONYMS[obj['shape']])
  style = rng.random()
  if style < 0.2:
    return f"{size} {color} {shape} made of {_pick(rng, _MATERIAL_NOUNS[obj['material']])}"
  if style < 0.4:
    return f"{size} {_pick(rng, _MATERIAL_ADJECTIVES[obj['material']])} {color} {shape}"
  return f"{size} {color} {_pick(rng, SYNONYMS[obj['material']])} {shape}"


def _with_article(phrase):
  """Prefixes 'a' or 'an' as English wants before the phrase's first word."""
  return ('an ' if phrase[0] in 'aeiou' else 'a ') + phrase


def _relation(objects, rng):
  """Returns one true spatial relation between two different objects, or None.

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
  return f'the {_noun_phrase(a, rng)} is {words} the {_noun_phrase(b, rng)}'


def caption(scene, rng, relation_prob=0.5):
  """Writes a caption naming every object of `scene` (a `scenes.describe` entry).

  rng: a numpy Generator (its state alone fixes the words). With probability
  relation_prob, when there are at least two objects, one spatial relation follows as
  a second sentence. Returns lowercase words ending with a period.
  """
  objects = scene['objects']
  if not objects:
    return _pick(rng, _EMPTY) + '.'
  phrases = [_with_article(_noun_phrase(obj, rng)) for obj in objects]
  listed = phrases[0]
  if len(phrases) > 1:
    listed = ' and '.join(phrases[:-1]) + _pick(rng, _LAST_JOINS) + phrases[-1]
  text = _pick(rng, _OPENINGS).format(listed) + '.'
  if len(objects) >= 2 and rng.random() < relation_prob:
    relation = _relation(objects, rng)
    if relation is not None:
      text += ' ' + relation + '.'
  return text
