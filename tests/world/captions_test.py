"""Tests for learning_words.world.captions: every object recoverable, relations true."""

import collections
import re

import numpy as np

from learning_words.world import captions

VALUES = {
    'size': ('small', 'large'),
    'color': ('gray', 'red', 'blue', 'green', 'brown', 'purple', 'cyan', 'yellow'),
    'material': ('rubber', 'metal'),
    'shape': ('cube', 'sphere', 'cylinder'),
}
# Spoken word -> (attribute, value), written by hand (CLEVR's synonyms).
WORDS = {
    'small': ('size', 'small'), 'tiny': ('size', 'small'),
    'large': ('size', 'large'), 'big': ('size', 'large'),
    'rubber': ('material', 'rubber'), 'matte': ('material', 'rubber'),
    'metal': ('material', 'metal'), 'metallic': ('material', 'metal'),
    'shiny': ('material', 'metal'),
    'cube': ('shape', 'cube'), 'block': ('shape', 'cube'),
    'sphere': ('shape', 'sphere'), 'ball': ('shape', 'sphere'),
    'cylinder': ('shape', 'cylinder'),
    **{c: ('color', c) for c in VALUES['color']},
}
RELATIONS = ('to the left of', 'to the right of', 'in front of', 'behind')


def random_scene(rng):
  """A scene description as `scenes.describe` writes it, with random content."""
  objects = []
  for _ in range(rng.integers(0, 11)):
    obj = {key: str(rng.choice(options)) for key, options in VALUES.items()}
    obj.update(x=float(rng.random()), y=float(rng.random()), pixels=int(rng.integers(1, 90)))
    objects.append(obj)
  return {'objects': sorted(objects, key=lambda o: o['x'])}


def read_phrase(tokens, i):
  """Reads attribute words from tokens[i] up to the shape (and 'made of X'); -> (tuple, end)."""
  found = {}
  while 'shape' not in found:
    attribute, value = WORDS[tokens[i]]
    assert attribute not in found, tokens
    found[attribute] = value
    i += 1
  if tokens[i:i + 2] == ['made', 'of']:
    attribute, value = WORDS[tokens[i + 2]]
    assert attribute == 'material' and 'material' not in found, tokens
    found[attribute] = value
    i += 3
  return tuple(found[key] for key in ('size', 'color', 'material', 'shape')), i


def parse_objects(text):
  """The (size, colour, material, shape) of every object introduced with 'a' or 'an'."""
  tokens = text.replace('.', ' ').split()
  objects = []
  for i, token in enumerate(tokens):
    if token in ('a', 'an') and tokens[i + 1] in WORDS:
      objects.append(read_phrase(tokens, i + 1)[0])
  return collections.Counter(objects)


def parse_relation(text):
  """(subject tuple, relation, object tuple) of the relation sentence, or None."""
  sentences = [s.strip() for s in text.split('.') if s.strip()]
  if len(sentences) < 2:
    return None
  match = re.fullmatch(r'the (.+) is (%s) the (.+)' % '|'.join(RELATIONS), sentences[1])
  assert match, sentences[1]
  first, end = read_phrase(match.group(1).split(), 0)
  assert end == len(match.group(1).split())
  second, end = read_phrase(match.group(3).split(), 0)
  assert end == len(match.group(3).split())
  return first, match.group(2), second


def key_of(obj):
  """The (size, colour, material, shape) tuple of a described object."""
  return tuple(obj[key] for key in ('size', 'color', 'material', 'shape'))


def test_synonyms_cover_the_vocabulary():
  spoken = {word for words in captions.SYNONYMS.values() for word in words}
  assert set(captions.SYNONYMS) == {v for values in VALUES.values() for v in values}
  assert spoken <= set(WORDS)
  for value, words in captions.SYNONYMS.items():
    for word in words:
      assert WORDS[word][1] == value


def test_every_object_is_recoverable():
  rng = np.random.default_rng(0)
  for _ in range(400):
    scene = random_scene(rng)
    text = captions.caption(scene, rng)
    want = collections.Counter(key_of(o) for o in scene['objects'])
    assert parse_objects(text) == want, text


def test_caption_format_suits_speech():
  rng = np.random.default_rng(1)
  for _ in range(300):
    text = captions.caption(random_scene(rng), rng, relation_prob=0.7)
    assert re.fullmatch(r'[a-z]+( [a-z]+)*\.( [a-z]+( [a-z]+)*\.)?', text), text


def test_relations_are_true():
  rng = np.random.default_rng(2)
  stated = 0
  for _ in range(300):
    scene = random_scene(rng)
    text = captions.caption(scene, rng, relation_prob=1.0)
    relation = parse_relation(text)
    if len(scene['objects']) < 2:
      assert relation is None
      continue
    assert relation is not None, text
    first, words, second = relation
    a = [o for o in scene['objects'] if key_of(o) == first]
    b = [o for o in scene['objects'] if key_of(o) == second]
    assert a and b, text
    if len(a) > 1 or len(b) > 1:
      continue  # identical-looking objects: which one is meant is ambiguous
    a, b = a[0], b[0]
    holds = {'to the left of': a['x'] < b['x'], 'to the right of': a['x'] > b['x'],
             'in front of': a['y'] > b['y'], 'behind': a['y'] < b['y']}[words]
    assert holds, (text, a, b)
    stated += 1
  assert stated > 150


def test_relation_probability_zero_gives_one_sentence():
  rng = np.random.default_rng(3)
  for _ in range(100):
    assert captions.caption(random_scene(rng), rng, relation_prob=0.0).count('.') == 1


def test_synonyms_and_templates_vary():
  rng = np.random.default_rng(4)
  texts = [captions.caption(random_scene(rng), rng) for _ in range(300)]
  words = collections.Counter(' '.join(texts).replace('.', ' ').split())
  for word in WORDS:
    assert words[word] > 0, word
  openings = collections.Counter(' '.join(t.split()[:2]) for t in texts)
  assert len(openings) >= 5


def test_captions_are_deterministic():
  scenes_ = [random_scene(np.random.default_rng(i)) for i in range(20)]
  first = [captions.caption(s, np.random.default_rng(7)) for s in scenes_]
  again = [captions.caption(s, np.random.default_rng(7)) for s in scenes_]
  other = [captions.caption(s, np.random.default_rng(8)) for s in scenes_]
  assert first == again
  assert first != other


def test_empty_scene_still_speaks():
  text = captions.caption({'objects': []}, np.random.default_rng(0))
  assert re.fullmatch(r'[a-z ]+\.', text)


def test_tagged_words_name_their_objects_attributes():
  """Tags are checked with the hand-written WORDS table: each tagged word is a synonym of that
  object's value of that attribute, every object gets every attribute tagged, and the text is
  caption's own, word for word."""
  scene = {'objects': [
      {'shape': 'cube', 'color': 'red', 'size': 'large', 'material': 'metal', 'x': 0.2, 'y': 0.5},
      {'shape': 'sphere', 'color': 'cyan', 'size': 'small', 'material': 'rubber', 'x': 0.6,
       'y': 0.4},
      {'shape': 'cylinder', 'color': 'gray', 'size': 'small', 'material': 'metal', 'x': 0.8,
       'y': 0.7}]}
  for seed in range(40):
    text, tags = captions.tagged_caption(scene, np.random.default_rng(seed), 0.7)
    assert text == captions.caption(scene, np.random.default_rng(seed), 0.7)
    words = text.split(' ')
    assert len(tags) == len(words)
    seen = set()
    for word, tag in zip(words, tags):
      if tag is None:
        continue
      index, attribute = tag
      assert WORDS[word.rstrip('.')] == (attribute, scene['objects'][index][attribute])
      seen.add(tag)
    assert seen == {(i, a) for i in range(3) for a in VALUES}
