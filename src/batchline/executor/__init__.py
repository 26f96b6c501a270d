"""Executors run a batch job's inputs through the model: list -> fetch + decode -> batch -> infer -> write."""
