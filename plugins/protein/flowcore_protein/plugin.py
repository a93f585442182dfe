"""Entry point of flowcore-protein. Tiny on purpose: specs only, no torch, no biotite."""

from flowcore.hookspecs import hookimpl
from flowcore.spec import DatasetSpec, ModalitySpec
from flowcore_protein.options import ChainsOptions, IdealOptions, ProteinOptions

_DATA = "flowcore_protein.data"


@hookimpl
def flowcore_modalities():
    return [
        ModalitySpec(
            name="protein",
            factory="flowcore_protein.modality:Protein",
            description="protein backbones: one rigid frame (unit quaternion + CA) per residue, SE(3) flow",
            datasets=(
                DatasetSpec("protein_ideal", ("protein",), f"{_DATA}:ideal",
                            "generated ideal backbones from helix/strand/loop phi-psi (fast tests)",
                            options=IdealOptions),
                DatasetSpec("protein_theseus", ("protein",), f"{_DATA}:theseus",
                            "chains of Debian theseus-examples, length-filtered, deduplicated by sequence",
                            requires="Debian package theseus-examples", options=ChainsOptions),
                DatasetSpec("protein_mdanalysis", ("protein",), f"{_DATA}:mdanalysis",
                            "chains of the PDB/mmCIF files in pip MDAnalysisTests, filtered and deduplicated",
                            requires="pip install --no-deps MDAnalysisTests", options=ChainsOptions),
                DatasetSpec("protein_chains", ("protein",), f"{_DATA}:chains",
                            "protein_theseus and protein_mdanalysis together (the real training set)",
                            requires="theseus-examples (Debian) and MDAnalysisTests (pip)", options=ChainsOptions),
            ),
            metrics=("ca_ca_valid", "ca_ca_w1", "clash_rate", "rg_error", "helix_gap", "strand_gap",
                     "tm_diversity_gap"),
            has_codec=True,
            options=ProteinOptions,
        )
    ]
