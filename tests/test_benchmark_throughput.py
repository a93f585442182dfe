"""benchmarks/throughput.py stays runnable: its --smoke mode (tiny models on the CPU, aot_eager) runs
every part a GPU run does, and its memory search finds the largest size that fits."""

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def throughput(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import throughput

    return throughput


@pytest.mark.parametrize("limit, start, cap, expected", [(37, 1, 256, 37), (256, 1, 256, 256), (1, 1, 256, 1),
                                                        (0, 1, 256, 0), (300, 4, 16, 16), (9, 4, 16, 9)])
def test_the_memory_search_finds_the_largest_size_that_fits(throughput, limit, start, cap, expected):
    tried = []

    def fits(n):
        tried.append(n)
        return n <= limit

    assert throughput.largest(fits, start, cap) == expected
    assert len(tried) <= 2 * cap.bit_length() + 1  # doubling then bisection, not a scan


def test_the_smoke_run_writes_every_figure(throughput, tmp_path, monkeypatch):
    out, md = tmp_path / "throughput.json", tmp_path / "RESULTS.md"
    monkeypatch.setattr(sys, "argv", ["throughput.py", "--smoke", "--pairs", "1", "--out", str(out),
                                      "--results-md", str(md)])
    throughput.main()
    record = json.loads(out.read_text())
    assert record["max_abs_output_diff_fp32"] < 1e-4  # the converted model computes what diffusers' does
    assert [r["run"] for r in record["runs"]] == ["eager:eager", "compile:compile"]
    for run in record["runs"]:
        assert run["step_s"]["flowcore"] > 0 and 0 < run["mfu"]["flowcore"] < 1
        assert run["tokens_per_s"]["flowcore"] == pytest.approx(run["batch"] * 24 / run["step_s"]["flowcore"])
    # nothing runs out of memory on the CPU, so the search stops at the smoke caps (batch 4, latent side 16)
    assert [(r["library"], r["checkpointing"], r["largest_batch"], r["largest_latent"]) for r in record["memory"]] == [
        ("flowcore", False, 4, 16), ("flowcore", True, 4, 16), ("diffusers", False, 4, 16), ("diffusers", True, 4, 16)]
    text = md.read_text()
    assert "## throughput" in text and "| compile:compile | 2 |" in text and "| flowcore | every block | >= 4 |" in text
