"""Infrastructure every phase uses: checkpoints, batching, periodic actions, the mesh, processes,
writers, figures, JSON files, the console and the errors a user can fix."""
