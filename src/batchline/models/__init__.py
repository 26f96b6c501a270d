"""Models on disk: the model.yaml manifest and the folder they live in."""
