"""The synthetic Audio-CLEVR world: rendered scenes, captions and speech, built offline."""
