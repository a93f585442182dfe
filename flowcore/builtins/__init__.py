"""Modalities that ship with the core, registered through the same entry-point hook as any plugin."""
