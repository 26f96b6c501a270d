"""Video problems: an image model run on frames sampled from each video, reduced per video."""
