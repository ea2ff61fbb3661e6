"""The world's attribute vocabulary: what the labels of a render, a segmenter map and a caption
mean (label maps store 1 + the value's index, 0 = background)."""

SHAPES = ('cube', 'sphere', 'cylinder')
COLORS = ('gray', 'red', 'blue', 'green', 'brown', 'purple', 'cyan', 'yellow')
COLOR_RGB = {
    'gray': (87, 87, 87), 'red': (173, 35, 35), 'blue': (42, 75, 215),
    'green': (29, 105, 20), 'brown': (129, 74, 25), 'purple': (129, 38, 192),
    'cyan': (41, 208, 208), 'yellow': (255, 238, 51),
}
SIZES = ('small', 'large')
MATERIALS = ('rubber', 'metal')
ATTRIBUTES = ('shape', 'color', 'size', 'material')
VOCAB = {'shape': SHAPES, 'color': COLORS, 'size': SIZES, 'material': MATERIALS}
