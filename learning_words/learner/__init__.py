"""Phase 2, learning words: the train step and loop, its losses, matchmaps, drawn negatives,
concept clusters and the retrieval recall it validates with."""
