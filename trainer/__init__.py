"""The trainer: datasets, training, evaluation and the model-registry commands."""
