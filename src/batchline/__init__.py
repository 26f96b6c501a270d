"""batchline: the Google Cloud AutoML v1 prediction API, self-hosted."""

__version__ = "0.1.0"
