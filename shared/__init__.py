"""What producers, workers, the trainer and the CLI share, one subpackage a thing:

    wire/         the queue contract: protocol, posts, envelope check, producer, transport, dead letters
    model/        embedders, the classifier and its forward pass, model store and registry, embedding cache
    improvement/  review, corrections, version comparison, drift
    database/     connection, tables, results, migrations

and beside them settings, errors, Redis key names and the reader of post files.
"""
