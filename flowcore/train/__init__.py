"""Training and sampling: configs, Lightning modules, data, checkpoints, the pipeline the CLI runs.

``flowcore.train.config`` imports no torch; the other modules do.
"""
