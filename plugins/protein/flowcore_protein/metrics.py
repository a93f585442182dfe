"""Backbone metrics that need no downloaded network (ReQFlow / FrameFlow's network-free set).

Every metric takes two lists of samples (frames [L, 7]) and turns them into ideal backbones
first (``geometry.backbone_from_frames``), so real and generated chains are measured alike.
Distribution metrics compare generated against real; rate metrics read the generated set.

    ca_ca_valid      fraction of consecutive CA-CA distances within 3.8 +/- 0.2 A (higher better)
    ca_ca_w1         Wasserstein-1 (A) between real and generated consecutive CA-CA distances
    clash_rate       fraction of generated residues with a CA closer than 3.0 A to a CA of
                     residue j, |i - j| > 2
    rg_error         mean |log(Rg / Rg_real(L))|: radius of gyration against the power law
                     Rg = a L^b fitted to the real chains (b = 0.38 when they share one length)
    helix_gap        |helix fraction generated - real| (P-SEA, biotite.structure.annotate_sse)
    strand_gap       |strand fraction generated - real| (same)
    tm_diversity_gap |mean pairwise TM-score generated - real| (tmtools' TM-align); lower
                     means the generated set is as diverse as the real one

``backbone_report`` gives the raw numbers behind them (fractions, means, N-CA-C angle).
"""

from __future__ import annotations

import itertools
from typing import Callable, Sequence

import numpy as np
import torch

from flowcore.modality import Metric
from flowcore_protein import geometry

CA_CA_IDEAL = geometry.CA_CA
CA_CA_TOLERANCE = 0.2
CLASH_DISTANCE = 3.0
#: exponent of Rg ~ L^b for compact globular proteins, used when lengths cannot fit one
RG_EXPONENT = 0.38


def ca_coords(samples: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """CA [L, 3] (float64, A) of each sample: the frames' translations."""
    return [torch.as_tensor(s)[:, 4:].double().numpy() for s in samples]


def consecutive_ca(samples: Sequence[torch.Tensor]) -> np.ndarray:
    """All consecutive CA-CA distances of the samples, pooled [sum(L - 1)]."""
    parts = [np.linalg.norm(ca[1:] - ca[:-1], axis=-1) for ca in ca_coords(samples)]
    return np.concatenate(parts) if parts else np.zeros(0)


def ca_ca_valid(samples: Sequence[torch.Tensor]) -> float:
    d = consecutive_ca(samples)
    return float(np.mean(np.abs(d - CA_CA_IDEAL) <= CA_CA_TOLERANCE)) if d.size else 0.0


def clash_rate(samples: Sequence[torch.Tensor]) -> float:
    """Fraction of residues (pooled) with some CA-CA < 3.0 A to a residue j, |i - j| > 2."""
    clashing, total = 0, 0
    for ca in ca_coords(samples):
        d = np.linalg.norm(ca[:, None] - ca[None], axis=-1)
        idx = np.arange(len(ca))
        far = np.abs(idx[:, None] - idx[None]) > 2
        clashing += int(((d < CLASH_DISTANCE) & far).any(1).sum())
        total += len(ca)
    return clashing / max(total, 1)


def radius_of_gyration(ca: np.ndarray) -> float:
    return float(np.sqrt(((ca - ca.mean(0)) ** 2).sum(-1).mean()))


def fit_rg(samples: Sequence[torch.Tensor]) -> tuple[float, float]:
    """(a, b) of Rg = a L^b, least squares in log space over the samples."""
    cas = ca_coords(samples)
    log_l = np.log([len(ca) for ca in cas])
    log_rg = np.log([max(radius_of_gyration(ca), 1e-6) for ca in cas])
    if np.ptp(log_l) < 1e-6:
        b = RG_EXPONENT
    else:
        b = float(np.polyfit(log_l, log_rg, 1)[0])
    return float(np.exp(np.mean(log_rg - b * log_l))), b


def rg_error(real: Sequence[torch.Tensor], generated: Sequence[torch.Tensor]) -> float:
    a, b = fit_rg(real)
    errs = [abs(np.log(max(radius_of_gyration(ca), 1e-6) / (a * len(ca) ** b))) for ca in ca_coords(generated)]
    return float(np.mean(errs))


def secondary_structure(samples: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """P-SEA codes per residue ('a' helix, 'b' strand, 'c' coil) of each sample, from its CA."""
    import biotite.structure as struc

    out = []
    for ca in ca_coords(samples):
        array = struc.AtomArray(len(ca))
        array.coord = ca.astype(np.float32)
        array.chain_id[:] = "A"
        array.res_id = np.arange(1, len(ca) + 1)
        array.res_name[:] = "ALA"
        array.atom_name[:] = "CA"
        array.element[:] = "C"
        out.append(np.asarray(struc.annotate_sse(array)))
    return out


def ss_fractions(samples: Sequence[torch.Tensor]) -> dict[str, float]:
    """Pooled fractions of residues in helix, strand and coil."""
    codes = np.concatenate(secondary_structure(samples)) if samples else np.zeros(0, dtype="<U1")
    n = max(codes.size, 1)
    return {"helix": float((codes == "a").sum() / n), "strand": float((codes == "b").sum() / n),
            "coil": float((codes == "c").sum() / n)}


def tm_score(a: np.ndarray, b: np.ndarray) -> float:
    """TM-score of two CA traces [L_a, 3], [L_b, 3] by TM-align, averaged over both normalisations."""
    from tmtools import tm_align

    res = tm_align(a, b, "A" * len(a), "A" * len(b))
    return 0.5 * (res.tm_norm_chain1 + res.tm_norm_chain2)


def pairwise_tm(samples: Sequence[torch.Tensor], max_samples: int = 32) -> float:
    """Mean TM-score over all pairs of the first ``max_samples`` samples (lower = more diverse)."""
    cas = [np.ascontiguousarray(ca) for ca in ca_coords(samples[:max_samples])]
    scores = [tm_score(a, b) for a, b in itertools.combinations(cas, 2)]
    return float(np.mean(scores)) if scores else 0.0


def backbone_report(samples: Sequence[torch.Tensor], tm_samples: int = 32) -> dict[str, float]:
    """The raw numbers of one set: CA-CA statistics, clash rate, Rg fit, SS fractions, diversity,
    and the N-CA-C angle (fixed at the ideal 111.07 degrees by the decoder for frames)."""
    d = consecutive_ca(samples)
    atoms = [geometry.backbone_from_frames(s) for s in samples]
    angles = torch.cat([geometry.bond_angle(x[:, 0], x[:, 1], x[:, 2]) for x in atoms]) if atoms else torch.zeros(0)
    a, b = fit_rg(samples) if samples else (0.0, 0.0)
    report = {
        "samples": float(len(samples)),
        "mean_length": float(np.mean([len(s) for s in samples])) if samples else 0.0,
        "ca_ca_mean": float(d.mean()) if d.size else 0.0,
        "ca_ca_std": float(d.std()) if d.size else 0.0,
        "ca_ca_valid": ca_ca_valid(samples),
        "clash_rate": clash_rate(samples),
        "n_ca_c_angle_mean": float(angles.mean()) if angles.numel() else 0.0,
        "rg_a": a,
        "rg_b": b,
        **{f"{k}_fraction": v for k, v in ss_fractions(samples).items()},
        "pairwise_tm": pairwise_tm(samples, tm_samples),
    }
    return report


def _wasserstein(real: Sequence[torch.Tensor], generated: Sequence[torch.Tensor]) -> float:
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(consecutive_ca(real), consecutive_ca(generated)))


def _gap(key: str) -> Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor]], float]:
    def gap(real, generated):
        return abs(ss_fractions(generated)[key] - ss_fractions(real)[key])

    return gap


def _tm_gap(tm_samples: int) -> Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor]], float]:
    def gap(real, generated):
        return abs(pairwise_tm(generated, tm_samples) - pairwise_tm(real, tm_samples))

    return gap


METRICS = ("ca_ca_valid", "ca_ca_w1", "clash_rate", "rg_error", "helix_gap", "strand_gap", "tm_diversity_gap")


def make_metrics(names: Sequence[str] = METRICS, tm_samples: int = 32) -> dict[str, Metric]:
    """The named metrics as flowcore Metrics (real, generated) -> float."""
    table = {
        "ca_ca_valid": Metric("ca_ca_valid", lambda real, gen: ca_ca_valid(gen), False,
                              "fraction of generated consecutive CA-CA within 3.8 +/- 0.2 A"),
        "ca_ca_w1": Metric("ca_ca_w1", _wasserstein, True,
                           "Wasserstein-1 (A) between real and generated consecutive CA-CA distances"),
        "clash_rate": Metric("clash_rate", lambda real, gen: clash_rate(gen), True,
                             "fraction of generated residues with a CA-CA < 3.0 A, |i - j| > 2"),
        "rg_error": Metric("rg_error", rg_error, True,
                           "mean |log(Rg / Rg_real(L))| against the power law fitted to the real chains"),
        "helix_gap": Metric("helix_gap", _gap("helix"), True, "|helix fraction generated - real| (P-SEA)"),
        "strand_gap": Metric("strand_gap", _gap("strand"), True, "|strand fraction generated - real| (P-SEA)"),
        "tm_diversity_gap": Metric("tm_diversity_gap", _tm_gap(tm_samples), True,
                                   "|mean pairwise TM-score generated - real| (TM-align)"),
    }
    return {name: table[name] for name in names}
