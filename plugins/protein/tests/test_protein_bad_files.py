"""Structure files the codec once read without a word: each now gives one line naming the file and residue.

The files are tests/data/bad/protein/: an 8-residue ideal helix (written by write_backbone_pdb)
with one residue renamed, given a NaN coordinate, flattened, or moved 9990 A away.
"""

import warnings
from pathlib import Path

import pytest

from flowcore.errors import DataError
from flowcore_protein.modality import ProteinCodec
from flowcore_protein.pdbio import ChainBreakWarning, UnknownResidueWarning, read_backbones

BAD = Path(__file__).resolve().parents[3] / "tests" / "data" / "bad" / "protein"


def one_line_error(path: Path) -> str:
    with pytest.raises(DataError) as err:
        ProteinCodec().read(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


def warnings_of(path: Path) -> dict[type, str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_backbones(path)
    found = {w.category: str(w.message) for w in caught}
    assert all(m.startswith(f"{path}: ") and "\n" not in m for m in found.values())
    return found


def test_an_unknown_residue_name_is_skipped_with_a_warning_naming_it():
    found = warnings_of(BAD / "unknown_residue.pdb")
    assert "skipped 1 residue(s) with N, CA and C whose name is no known amino acid: A:XYZ4" \
        in found[UnknownResidueWarning]
    assert "A:GLY3-A:GLY5 (5.5 A)" in found[ChainBreakWarning]  # the gap it leaves is named too
    (backbone,) = read_backbones(BAD / "unknown_residue.pdb")
    assert list(backbone.res_ids) == [1, 2, 3, 5, 6, 7, 8]


def test_a_ca_far_away_is_a_chain_break_warning_naming_the_residues():
    found = warnings_of(BAD / "ca_far_away.pdb")
    assert "2 chain break(s), CA-CA over 4.2 A: A:GLY4-A:GLY5 (9992.3 A), A:GLY5-A:GLY6" \
        in found[ChainBreakWarning]


def test_non_finite_coordinates_are_a_data_error_naming_the_residue():
    assert "residue A:GLY3 has non-finite coordinates" in one_line_error(BAD / "nan_coordinates.pdb")


def test_collinear_backbone_atoms_are_a_data_error_naming_the_residue():
    assert "residue A:GLY3 has collinear (or coincident) N, CA and C" \
        in one_line_error(BAD / "collinear_backbone.pdb")


def test_a_clean_chain_reads_without_warnings(tmp_path):
    import torch

    from flowcore_protein import geometry
    from flowcore_protein.pdbio import write_backbone_pdb

    write_backbone_pdb(geometry.build_backbone(torch.full((8,), -63.0), torch.full((8,), -43.0)).numpy(),
                       tmp_path / "clean.pdb")
    assert warnings_of(tmp_path / "clean.pdb") == {}
