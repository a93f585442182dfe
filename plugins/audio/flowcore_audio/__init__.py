"""flowcore-audio: sound as a flowcore modality (soundfile codec, log-mel, mel patch tokens, Griffin-Lim)."""

__version__ = "0.1.0"
