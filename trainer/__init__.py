"""The trainer: datasets, training, fine-tuning, evaluation, plots and model cards."""
