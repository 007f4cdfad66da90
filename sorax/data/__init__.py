"""Data: the procedural world, video file I/O, and input pipelines."""
