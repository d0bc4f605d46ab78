"""The model: embedders, preprocessing, the classifier and its numpy forward pass, out-of-domain scores,
the model store on disk, the registry of versions and aliases, and the embedding cache."""
