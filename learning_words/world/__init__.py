"""Phase 1, the synthetic Audio-CLEVR world: scenes and their renderer, the GAN and the attribute
segmenter trained on them, captions, speech, and the image / spoken-caption dataset they make."""
