"""PDB / mmCIF reading and PDB writing of protein backbones, through biotite.

biotite parses PDB, PDBx/mmCIF and BinaryCIF with one API (``get_structure``), is pure
numpy-friendly Python with compiled hot paths, is actively maintained (releases every few
months), and also ships the P-SEA secondary-structure assignment the metrics use, so one
well-kept dependency serves both. Compressed files (``.gz``, ``.bz2``) are opened here.

A file gives one :class:`Backbone` per protein chain of its first model: the N, CA, C, O
coordinates of every residue that has all four. Residues missing any of them are skipped
with a warning that names them; so are residues whose name is no amino acid biotite knows
(they would leave a gap in the chain unannounced). Consecutive CA atoms further apart than
:data:`CHAIN_BREAK` give a :class:`ChainBreakWarning` naming both residues; a residue with
non-finite coordinates, or whose N, CA and C are collinear (its frame is undefined), is a
DataError naming the file and the residue.
"""

from __future__ import annotations

import bz2
import gzip
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from flowcore.errors import DataError

BACKBONE_ATOMS = ("N", "CA", "C", "O")
#: the carbonyl O of a C-terminal residue under the names MD force fields give it
O_ALIASES = ("O", "OT1", "OC1", "O1")
PDB_SUFFIXES = (".pdb", ".ent")
CIF_SUFFIXES = (".cif", ".mmcif", ".pdbx")
BCIF_SUFFIXES = (".bcif",)
COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open}
READ_SUFFIXES = tuple(s + z for s in PDB_SUFFIXES + CIF_SUFFIXES + BCIF_SUFFIXES for z in ("", *COMPRESSED))
#: consecutive CA-CA distances above this (Angstrom) are chain breaks (ideal 3.80; cis peptides 2.9)
CHAIN_BREAK = 4.2
#: N-CA-C angles within this many degrees of 0 or 180 leave a residue without a frame (ideal 111)
COLLINEAR_DEGREES = 1.0


class MissingBackboneWarning(UserWarning):
    """Residues were skipped because they lack N, CA, C or O."""


class UnknownResidueWarning(UserWarning):
    """Residues with backbone atoms were skipped because their name is no known amino acid."""


class ChainBreakWarning(UserWarning):
    """Consecutive residues of a chain are too far apart to be bonded."""


@dataclass
class Backbone:
    """One chain's backbone as read from a file.

    atoms    [L, 4, 3] float32, Angstrom, atoms in the order N, CA, C, O
    sequence one-letter codes, length L ('X' for non-standard residues)
    res_ids  [L] int residue numbers as in the file
    """

    atoms: np.ndarray
    sequence: str
    chain: str
    res_ids: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return len(self.sequence)


def _split_suffix(path: Path) -> tuple[str, str]:
    """'x.cif.gz' -> ('.cif', '.gz'); 'x.pdb' -> ('.pdb', '')."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSED:
        return (suffixes[-2] if len(suffixes) > 1 else ""), suffixes[-1]
    return (suffixes[-1] if suffixes else ""), ""


def load_structure(path: str | Path, model: int = 1):
    """A PDB / mmCIF / BinaryCIF file (optionally .gz / .bz2) -> biotite AtomArray of one model."""
    import biotite.structure.io.pdb as pdb
    import biotite.structure.io.pdbx as pdbx

    path = Path(path)
    kind, compression = _split_suffix(path)
    if kind not in PDB_SUFFIXES + CIF_SUFFIXES + BCIF_SUFFIXES:
        raise DataError(f"{path}: unknown structure file type; protein files end in {', '.join(READ_SUFFIXES)}")
    binary = kind in BCIF_SUFFIXES
    try:
        opener = COMPRESSED.get(compression)
        if opener is None:
            raw = path.read_bytes()
        else:
            with opener(path, "rb") as fh:
                raw = fh.read()
        if binary:
            array = pdbx.get_structure(pdbx.BinaryCIFFile.read(io.BytesIO(raw)), model=model)
        else:
            text = io.StringIO(raw.decode("utf-8", errors="strict"))
            if kind in PDB_SUFFIXES:
                array = pdb.PDBFile.read(text).get_structure(model=model)
            else:
                array = pdbx.get_structure(pdbx.CIFFile.read(text), model=model)
    except Exception as exc:  # OSError, gzip/bz2 errors, biotite's InvalidFileError, ...: all mean "bad file"
        raise DataError(f"{path}: not a readable {kind.lstrip('.').upper()} structure file: "
                        f"{type(exc).__name__}: {exc}") from exc
    if array.array_length() == 0:
        raise DataError(f"{path}: the file holds no atoms")
    return array


def _one_letter(res_name: str) -> str:
    from biotite.sequence import ProteinSequence

    try:
        return ProteinSequence.convert_letter_3to1(res_name)
    except KeyError:
        return "X"


def _first_atom(atom_names: np.ndarray, residue_of: np.ndarray, residues: int, names: Sequence[str]) -> np.ndarray:
    """Per residue, the index of its first atom called names[0] (else names[1], ...), or -1."""
    found = np.full(residues, -1)
    for name in reversed(names):  # earlier names overwrite later ones
        hits = np.nonzero(atom_names == name)[0]
        residues_hit, first = np.unique(residue_of[hits], return_index=True)
        found[residues_hit] = hits[first]
    return found


def backbones_from_array(array, chains: Sequence[str] | None = None, source: str = "") -> list[Backbone]:
    """biotite AtomArray -> one :class:`Backbone` per protein chain (in file order).

    chains: chain ids to keep (None = every chain with protein residues); an id the file
    lacks is a DataError listing those it has.
    """
    import biotite.structure as struc

    amino = struc.filter_amino_acids(array)
    _warn_unknown(array[~amino], source)
    protein = array[amino]
    present = list(dict.fromkeys(str(c) for c in protein.chain_id))
    if chains is not None:
        wanted = [str(c) for c in chains]
        missing = [c for c in wanted if c not in present]
        if missing:
            raise DataError(f"{source}: no protein chain {missing}; chains with protein residues: {present}")
        present = [c for c in present if c in wanted]
    out, skipped = [], []
    for chain in present:
        atoms = protein[protein.chain_id == chain]
        starts = struc.get_residue_starts(atoms)
        residue_of = np.searchsorted(starts, np.arange(atoms.array_length()), side="right") - 1
        index = {name: _first_atom(atoms.atom_name, residue_of, len(starts), names)
                 for name, names in zip(BACKBONE_ATOMS, (("N",), ("CA",), ("C",), O_ALIASES))}
        complete = np.all([index[name] >= 0 for name in BACKBONE_ATOMS], axis=0)
        for r in np.nonzero(~complete)[0]:
            lo = starts[r]
            lacking = "/".join(name for name in BACKBONE_ATOMS if index[name][r] < 0)
            skipped.append(f"{chain}:{atoms.res_name[lo]}{atoms.res_id[lo]}{atoms.ins_code[lo]} (no {lacking})")
        if complete.any():
            picks = np.stack([index[name][complete] for name in BACKBONE_ATOMS], 1)  # [L, 4]
            first = starts[complete]
            backbone = Backbone(atoms.coord[picks].astype(np.float32),
                                "".join(_one_letter(str(n)) for n in atoms.res_name[first]), chain,
                                atoms.res_id[first].astype(np.int64), source)
            _check_geometry(backbone, [f"{chain}:{atoms.res_name[i]}{atoms.res_id[i]}{atoms.ins_code[i]}"
                                       for i in first])
            out.append(backbone)
    if skipped:
        warnings.warn(f"{source}: skipped {len(skipped)} residue(s) missing backbone atoms: {_shown(skipped)}",
                      MissingBackboneWarning, stacklevel=3)
    return out


def _shown(names: Sequence[str], most: int = 20) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _warn_unknown(others, source: str) -> None:
    """Warn about residues outside biotite's amino acids that still hold N, CA and C: an unknown name."""
    import biotite.structure as struc

    others = others[np.isin(others.atom_name, ("N", "CA", "C"))]  # waters and most ligands drop out here
    if others.array_length() == 0:
        return
    unknown = []
    for residue in struc.residue_iter(others):
        if {"N", "CA", "C"} <= set(residue.atom_name.tolist()):
            unknown.append(f"{residue.chain_id[0]}:{residue.res_name[0]}{residue.res_id[0]}{residue.ins_code[0]}")
    if unknown:
        warnings.warn(f"{source}: skipped {len(unknown)} residue(s) with N, CA and C whose name is no known "
                      f"amino acid: {_shown(unknown)}; rename them to a standard residue to keep them",
                      UnknownResidueWarning, stacklevel=4)


def _check_geometry(backbone: Backbone, names: Sequence[str]) -> None:
    """DataError for a residue without a frame (non-finite or collinear N, CA, C); a warning at chain breaks."""
    atoms = backbone.atoms.astype(np.float64)
    finite = np.isfinite(atoms).all(axis=(1, 2))
    if not finite.all():
        raise DataError(f"{backbone.source}: residue {names[int(np.argmin(finite))]} has non-finite coordinates; "
                        "fix them or remove the residue")
    u, v = atoms[:, 0] - atoms[:, 1], atoms[:, 2] - atoms[:, 1]  # CA->N, CA->C
    lengths = np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1)
    sine = np.linalg.norm(np.cross(u, v), axis=-1) / np.maximum(lengths, 1e-12)
    flat = sine < np.sin(np.radians(COLLINEAR_DEGREES))
    if flat.any():
        raise DataError(f"{backbone.source}: residue {names[int(np.argmax(flat))]} has collinear (or coincident) "
                        "N, CA and C, so no frame; fix its coordinates or remove the residue")
    gaps = np.linalg.norm(atoms[1:, 1] - atoms[:-1, 1], axis=-1)
    breaks = [f"{names[k]}-{names[k + 1]} ({gaps[k]:.1f} A)" for k in np.nonzero(gaps > CHAIN_BREAK)[0]]
    if breaks:
        warnings.warn(f"{backbone.source}: {len(breaks)} chain break(s), CA-CA over {CHAIN_BREAK} A: "
                      f"{_shown(breaks)}", ChainBreakWarning, stacklevel=4)


def read_backbones(path: str | Path, chains: Sequence[str] | None = None, model: int = 1) -> list[Backbone]:
    """Every protein chain (or those named) of a structure file's first model, as backbones.

    A file that cannot be parsed, or that has no residue with N, CA, C and O, is a DataError
    naming it.
    """
    backbones = backbones_from_array(load_structure(path, model), chains, source=str(path))
    if not backbones:
        raise DataError(f"{path}: no protein residue with all of N, CA, C, O")
    return backbones


def backbone_array(atoms: np.ndarray, residue: str = "GLY", chain: str = "A"):
    """Backbone atoms [L, 4, 3] -> biotite AtomArray (residues named ``residue``)."""
    import biotite.structure as struc

    atoms = np.asarray(atoms, dtype=np.float32)
    length = atoms.shape[0]
    array = struc.AtomArray(4 * length)
    array.coord = atoms.reshape(-1, 3)
    array.chain_id[:] = chain
    array.res_id = np.repeat(np.arange(1, length + 1), 4)
    array.res_name[:] = residue
    array.atom_name = np.tile(BACKBONE_ATOMS, length)
    array.element = np.tile(["N", "C", "C", "O"], length)
    array.hetero[:] = False
    return array


def _check_residue(residue: str) -> None:
    if residue not in ("GLY", "ALA"):
        raise DataError(f"protein PDB writer: residue must be 'GLY' or 'ALA', got {residue!r}")


def _write_array(array, path: str | Path) -> None:
    """Write ``array`` in the format of ``path``'s suffix (PDB, mmCIF or BinaryCIF, optionally .gz /
    .bz2), looking past the ``.tmp`` of an atomic write's temporary name."""
    import biotite.structure as struc
    import biotite.structure.io.pdb as pdb
    import biotite.structure.io.pdbx as pdbx

    kind, compression = _split_suffix(Path(str(path).removesuffix(".tmp")))
    if kind not in PDB_SUFFIXES + CIF_SUFFIXES + BCIF_SUFFIXES:
        kind = ".pdb"  # an unknown suffix gets the PDB text it always got
    try:
        if kind in PDB_SUFFIXES:
            out = pdb.PDBFile()
            out.set_structure(array)
        else:
            out = pdbx.BinaryCIFFile() if kind in BCIF_SUFFIXES else pdbx.CIFFile()
            pdbx.set_structure(out, array)
    except struc.BadStructureError as exc:  # coordinates past 9999.999 A, or non-finite: PDB has no room
        raise DataError(f"{path}: cannot write these atoms as {kind.lstrip('.').upper()}: {exc}") from exc
    buffer = io.BytesIO() if kind in BCIF_SUFFIXES else io.StringIO()
    out.write(buffer)
    raw = buffer.getvalue()
    raw = raw if isinstance(raw, bytes) else raw.encode()
    opener = COMPRESSED.get(compression)
    if opener is None:
        Path(path).write_bytes(raw)
    else:
        with opener(path, "wb") as fh:
            fh.write(raw)


def write_backbone_pdb(atoms: np.ndarray, path: str | Path, residue: str = "GLY") -> None:
    """Write one chain's backbone atoms [L, 4, 3] (N, CA, C, O) as a PDB file (or, by ``path``'s
    suffix, mmCIF or BinaryCIF, optionally compressed).

    Residues are named ``residue`` (GLY or ALA: neither needs side-chain atoms a viewer
    would miss), chain A, numbered from 1; the atoms carry their elements.
    """
    _check_residue(residue)
    _write_array(backbone_array(atoms, residue), path)


def write_chains_pdb(chains: Sequence[np.ndarray], path: str | Path, residue: str = "GLY",
                     spacing: float = 60.0) -> None:
    """Several backbones [L_i, 4, 3] as chains A, B, ... of one PDB file, centred and laid
    ``spacing`` Angstrom apart along x so a viewer shows them side by side."""
    import biotite.structure as struc

    _check_residue(residue)
    if not 1 <= len(chains) <= 26:
        raise DataError(f"{path}: write_chains_pdb takes 1 to 26 backbones, got {len(chains)}")
    arrays = []
    for i, atoms in enumerate(chains):
        atoms = np.asarray(atoms, dtype=np.float32)
        shift = np.array([i * spacing, 0.0, 0.0], dtype=np.float32) - atoms[:, 1].mean(0)
        arrays.append(backbone_array(atoms + shift, residue, chain=chr(ord("A") + i)))
    _write_array(struc.concatenate(arrays), path)
