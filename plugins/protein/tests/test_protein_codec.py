"""Reading PDB / mmCIF (plain and compressed), chain choice, skipped residues, errors, PDB writing."""

import bz2
import gzip
import shutil

import numpy as np
import pytest
import torch

from flowcore.errors import DataError
from flowcore_protein import geometry
from flowcore_protein.modality import ProteinCodec
from flowcore_protein.pdbio import (
    MissingBackboneWarning,
    backbone_array,
    read_backbones,
    write_backbone_pdb,
    write_chains_pdb,
)


def _helix(length=12):
    return geometry.build_backbone(torch.full((length,), -63.0), torch.full((length,), -43.0)).float().numpy()


def _two_chain_structure(tmp_path):
    """A PDB of chains A (12 residues) and B (8 residues); the same as mmCIF and BinaryCIF; gzip, bzip2."""
    import biotite.structure as struc
    import biotite.structure.io.pdbx as pdbx

    pdb_path = tmp_path / "two.pdb"
    write_chains_pdb([_helix(12), _helix(8)], pdb_path)
    array = read_backbones(pdb_path)
    cif = pdbx.CIFFile()
    pdbx.set_structure(cif, struc.concatenate([backbone_array(b.atoms, chain=b.chain) for b in array]))
    cif_path = tmp_path / "two.cif"
    cif.write(str(cif_path))
    bcif = pdbx.BinaryCIFFile()
    pdbx.set_structure(bcif, struc.concatenate([backbone_array(b.atoms, chain=b.chain) for b in array]))
    bcif.write(str(tmp_path / "two.bcif"))
    for p in (pdb_path, cif_path):
        with open(p, "rb") as src, gzip.open(str(p) + ".gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
    with open(pdb_path, "rb") as src, bz2.open(str(pdb_path) + ".bz2", "wb") as dst:
        shutil.copyfileobj(src, dst)
    return pdb_path


def test_pdb_mmcif_bcif_and_compressed_files_read_the_same_backbones(tmp_path):
    pdb_path = _two_chain_structure(tmp_path)
    ref = read_backbones(pdb_path)
    assert [(b.chain, len(b)) for b in ref] == [("A", 12), ("B", 8)]
    for name in ("two.cif", "two.cif.gz", "two.bcif", "two.pdb.gz", "two.pdb.bz2"):
        got = read_backbones(tmp_path / name)
        assert [(b.chain, len(b)) for b in got] == [("A", 12), ("B", 8)], name
        for a, b in zip(ref, got):
            assert np.allclose(a.atoms, b.atoms, atol=1e-3), name


def test_real_pdb_and_mmcif_of_one_entry_agree():
    from flowcore_protein.data import mdanalysis_root

    try:
        root = mdanalysis_root() / "mmcif"
    except DataError as exc:
        pytest.skip(str(exc))
    pdb, cif = read_backbones(root / "1BD2.pdb.gz"), read_backbones(root / "1BD2.cif.gz")
    assert [(b.chain, len(b)) for b in pdb] == [(b.chain, len(b)) for b in cif] == [
        ("A", 275), ("B", 99), ("C", 9), ("D", 190), ("E", 242)]
    assert all(np.allclose(a.atoms, b.atoms, atol=1e-3) for a, b in zip(pdb, cif))
    assert pdb[1].sequence.startswith("IQRTPKIQVY")  # beta-2-microglobulin


def test_chain_selection(tmp_path):
    pdb_path = _two_chain_structure(tmp_path)
    assert [b.chain for b in read_backbones(pdb_path, chains=["B"])] == ["B"]
    assert len(ProteinCodec(chains=["B"]).read(pdb_path)) == 8
    with pytest.raises(DataError, match=r"no protein chain \['Z'\].*\['A', 'B'\]"):
        read_backbones(pdb_path, chains=["Z"])


def test_residues_missing_backbone_atoms_are_skipped_and_named(tmp_path):
    path = tmp_path / "gappy.pdb"
    write_backbone_pdb(_helix(10), path)
    lines = path.read_text().splitlines()

    def drop(line):  # residue 4 loses its O, residue 7 its N
        res, atom = line[22:26].strip() if line.startswith("ATOM") else "", line[12:16].strip()
        return (res, atom) in {("4", "O"), ("7", "N")}

    path.write_text("\n".join(line for line in lines if not drop(line)) + "\n")
    with pytest.warns(MissingBackboneWarning, match=r"2 residue\(s\).*A:GLY4 \(no O\).*A:GLY7 \(no N\)"):
        (b,) = read_backbones(path)
    assert list(b.res_ids) == [1, 2, 3, 5, 6, 8, 9, 10]


@pytest.mark.parametrize("name,content", [
    ("garbage.pdb", "ATOM      1  N   GLY A   1      xx.xxx  1.000  2.000  1.00  0.00           N\n"),
    ("empty.pdb", ""),
    ("broken.cif", "data_x\nloop_\n_atom_site.id\n_atom_site.Cartn_x\n1\n"),
    ("notgzip.pdb.gz", "this is not gzip"),
    ("ligand.pdb", "HETATM    1  C1  LIG A   1       0.000   0.000   0.000  1.00  0.00           C\n"),
    ("thing.xyz", "1\n\nC 0 0 0\n"),
])
def test_malformed_files_raise_data_error_naming_them(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=name.replace(".", r"\.")):
        ProteinCodec().read(path)


def test_written_pdb_is_standard_fixed_column_format(tmp_path):
    import biotite.structure.io.pdb as pdb

    path = tmp_path / "out.pdb"
    atoms = _helix(5)
    write_backbone_pdb(atoms, path, residue="ALA")
    records = [line for line in path.read_text().splitlines() if line.startswith("ATOM")]
    assert len(records) == 20
    # PDB v3.3 columns: atom name 13-16, residue 18-20, chain 22, resSeq 23-26, x/y/z 31-54, element 77-78
    assert [r[12:16].strip() for r in records[:4]] == ["N", "CA", "C", "O"]
    assert {r[17:20] for r in records} == {"ALA"} and {r[21] for r in records} == {"A"}
    assert [r[76:78].strip() for r in records[:4]] == ["N", "C", "C", "O"]
    xyz = np.array([[float(r[30:38]), float(r[38:46]), float(r[46:54])] for r in records])
    assert np.allclose(xyz, atoms.reshape(-1, 3), atol=1e-3)
    assert pdb.PDBFile.read(str(path)).get_structure(model=1).array_length() == 20
    with pytest.raises(DataError, match="GLY' or 'ALA"):
        write_backbone_pdb(atoms, path, residue="TRP")


def test_codec_round_trip_keeps_frames(tmp_path, ideal_samples):
    codec = ProteinCodec()
    path = tmp_path / "x.pdb"
    codec.write(ideal_samples[0], path)
    assert torch.allclose(codec.read(path), ideal_samples[0], atol=codec.round_trip_atol)


def test_written_pdb_opens_in_pymol(tmp_path, ideal_samples):
    """A standard viewer reads what we write (PyMOL, when Debian's python3-pymol is installed)."""
    import subprocess

    probe = subprocess.run(["/usr/bin/python3", "-c", "import pymol"], cwd=tmp_path, capture_output=True)
    if probe.returncode != 0:
        pytest.skip("PyMOL is not installed (Debian python3-pymol)")
    codec = ProteinCodec(residue="ALA")
    codec.write(ideal_samples[0], tmp_path / "one.pdb")
    script = ("from pymol import cmd\ncmd.load('one.pdb', 's')\n"
              "print(cmd.count_atoms('s'), cmd.count_atoms('s and name CA'), cmd.get_chains('s'))\n"
              "cmd.dss('s')\nfrom pymol import stored\nstored.ss = []\n"
              "cmd.iterate('s and name CA', 'stored.ss.append(ss)')\nprint(''.join(stored.ss))\n")
    out = subprocess.run(["/usr/bin/python3", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    counts, ss = out.stdout.strip().splitlines()[-2:]
    n = len(ideal_samples[0])
    assert counts == f"{4 * n} {n} ['A']"
    assert set(ss) <= set("HSL") and "H" in ss  # PyMOL's own SS assignment finds the built helices
