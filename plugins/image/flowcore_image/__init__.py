"""flowcore-image: images as a flowcore modality (codec, patch tokenizer, KL-VAE, datasets, metrics)."""

__version__ = "0.1.0"
