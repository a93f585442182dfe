"""1-D sequences of float values, a patch of values per token: a flowcore modality plugin."""
