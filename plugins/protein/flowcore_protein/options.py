"""Options of the protein modality and its datasets: pydantic models, no torch, no biotite.

The entry point (flowcore_protein/plugin.py) declares them on its specs, so a config is
checked against them before torch or this plugin's heavy modules are imported. The defaults
are the factories' defaults (flowcore_protein.modality.Protein, flowcore_protein.data).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from flowcore.schema import Number, Options

#: the names of flowcore_protein.metrics.METRICS (a test keeps the two equal)
MetricName = Literal["ca_ca_valid", "ca_ca_w1", "clash_rate", "rg_error", "helix_gap", "strand_gap",
                     "tm_diversity_gap"]


class ProteinOptions(Options):
    """``modalities.protein`` (see :class:`flowcore_protein.modality.Protein` for what each does)."""

    translation_scale: Number = Field(10.0, gt=0)
    length: int = Field(128, ge=1)
    chains: list[str] | None = None
    residue: str = "GLY"
    metrics: list[MetricName] | None = None
    tm_samples: int = Field(32, ge=1)
    aux_weight: Number = Field(0.0, ge=0)
    aux_t_max: Number = Field(0.25, gt=0, le=1)
    rotation_schedule: Literal["linear", "exp"] = "linear"
    rotation_rate: Number = Field(10.0, gt=0)
    clash_weight: Number = Field(0.0, ge=0)
    clash_distance: Number = Field(3.8, gt=0)
    #: null: aux_t_max
    clash_t_max: Number | None = Field(None, gt=0, le=1)


class BackboneOptions(Options):
    """``data.options`` every protein dataset takes: the chain lengths kept, the train crop."""

    #: chains shorter or longer than these are left out (generated: drawn in this range)
    min_length: int = Field(60, ge=1)
    max_length: int = Field(256, ge=1)
    #: train items are random windows of at most this many residues (null: whole chains)
    crop: int | None = Field(None, ge=2)

    @model_validator(mode="after")
    def _lengths_fit(self) -> BackboneOptions:
        if self.max_length < self.min_length:
            raise ValueError(f"max_length ({self.max_length}) must be >= min_length ({self.min_length})")
        return self


class ChainsOptions(BackboneOptions):
    """``data.options`` of protein_theseus, protein_mdanalysis and protein_chains."""

    #: at most this many structure files of each source (null: all)
    max_files: int | None = Field(None, ge=1)


class IdealOptions(BackboneOptions):
    """``data.options`` of protein_ideal (generated backbones)."""

    #: backbones in the split (default: 512 train, 64 val and test)
    size: int | None = Field(None, ge=1)
    min_length: int = Field(40, ge=5)
    max_length: int = Field(128, ge=5)
    seed: int = 0
