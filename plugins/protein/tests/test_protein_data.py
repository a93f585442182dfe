"""Datasets: generated ideal backbones; real chains cut at breaks, length-filtered, deduplicated."""

import numpy as np
import pytest
import torch

from flowcore.errors import DataError
from flowcore_protein import data, geometry
from flowcore_protein.pdbio import read_backbones, write_backbone_pdb


def _chain(length, phi=-63.0, psi=-43.0):
    return geometry.build_backbone(torch.full((length,), phi), torch.full((length,), psi)).float().numpy()


def test_ideal_backbones_are_seeded_clash_free_and_in_range():
    a = data.ideal("train", size=6, min_length=30, max_length=60)
    b = data.ideal("train", size=6, min_length=30, max_length=60)
    v = data.ideal("val", size=6, min_length=30, max_length=60)
    assert len(a) == 6 and all(30 <= n <= 60 for n in a.lengths)
    assert all(torch.equal(x["protein"], y["protein"]) for x, y in zip(a, b))
    assert not torch.equal(a[0]["protein"][:30], v[0]["protein"][:30])
    for chain in a.chains:
        assert not data.has_clash(chain.frames[:, 4:].numpy())
        assert set(chain.sequence) <= set("abc") and len(chain.sequence) == len(chain)


def test_split_at_breaks_cuts_where_ca_jumps(tmp_path):
    atoms = _chain(20)
    atoms[12:] += np.array([0.0, 0.0, 30.0], dtype=np.float32)  # a 30 A jump between residues 12 and 13
    path = tmp_path / "broken.pdb"
    write_backbone_pdb(atoms, path)
    (bb,) = read_backbones(path)
    assert [len(s) for s in data.split_at_breaks(bb)] == [12, 8]


def test_real_chains_are_filtered_and_deduplicated_by_sequence(tmp_path, monkeypatch):
    root = tmp_path / "pdbs"
    root.mkdir()
    write_backbone_pdb(_chain(70), root / "a.pdb", residue="GLY")
    write_backbone_pdb(_chain(70, -120, 130), root / "b.pdb", residue="GLY")  # same sequence as a
    write_backbone_pdb(_chain(80), root / "c.pdb", residue="ALA")
    write_backbone_pdb(_chain(20), root / "d.pdb", residue="ALA")  # too short
    (root / "e.pdb").write_text("not a structure\n")  # unreadable: skipped with a warning
    monkeypatch.setattr(data, "split_of_sequence", lambda seq: "train")
    with pytest.warns(UserWarning, match="1 unreadable structure file"):
        ds = data.real_chains([root], "train", min_length=60, max_length=256)
    assert sorted(ds.lengths) == [70, 80]
    assert ds.chains[0].source.startswith(str(root / "a.pdb"))  # first file wins a duplicate
    assert list((tmp_path / "cache" / "protein").glob("chains-*.npz"))
    data._read_chains.cache_clear()
    again = data.real_chains([root], "train", min_length=60, max_length=256)  # from the disk cache
    assert [c.sequence for c in again.chains] == [c.sequence for c in ds.chains]
    assert all(torch.equal(x.frames, y.frames) for x, y in zip(again.chains, ds.chains))


def test_splits_partition_by_sequence_hash():
    seqs = ["".join(np.random.default_rng(i).choice(list("ACDEFGHIKLMNPQRSTVWY"), 50)) for i in range(400)]
    splits = [data.split_of_sequence(s) for s in seqs]
    assert {s: splits.count(s) for s in ("train", "val", "test")}["train"] > 320
    assert 5 < splits.count("val") < 40 and 5 < splits.count("test") < 40


def test_missing_debian_package_is_a_data_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "THESEUS_DIR", tmp_path / "nothing")
    with pytest.raises(DataError, match="theseus-examples"):
        data.theseus("train")


@pytest.mark.parametrize("factory,requirement", [(data.theseus, "theseus-examples"),
                                                  (data.mdanalysis, "MDAnalysisTests")])
def test_installed_real_sets_give_length_filtered_unique_chains(factory, requirement):
    try:
        ds = factory("train", max_files=25, min_length=60, max_length=256)
    except DataError as exc:
        assert requirement in str(exc)
        pytest.skip(str(exc))
    assert len(ds) > 0 and all(60 <= n <= 256 for n in ds.lengths)
    assert len({c.sequence for c in ds.chains}) == len(ds)
    ca_ca = np.concatenate([np.linalg.norm(np.diff(c.frames[:, 4:].numpy(), axis=0), axis=-1) for c in ds.chains])
    assert ca_ca.max() <= data.BREAK_DISTANCE
