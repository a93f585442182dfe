"""reliability: what a new user meets when a run goes wrong, probed through the real ``flowcore`` CLI.

Every case runs ``flowcore`` in a subprocess in a temporary folder, on tiny toy2d runs (MLP hidden
32, depth 2, batch 64, 200 steps, one thread), and records the command, its exit code, the first
line of its stderr, the error line a user reads (the first ``flowcore: error`` line, else the last
line of stderr) and whether the case passed:

- diverging: SGD at lr 1e4 without gradient clipping. Passes when it exits non-zero with one
  error line and no traceback, and model.safetensors, if written, holds only finite numbers.
- run code: a run directory whose config.yaml lists a plugin file that writes a marker, sampled
  without --trust-run-code. Passes when the file does not run and the command either samples
  (exit 0) or refuses with exit 2 in one error line.
- planted pickle: checkpoints/last.ckpt replaced by a torch.save of an object whose __reduce__
  writes a marker, resumed with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1. Passes when the marker is not
  written and the resume exits 2 with one error line.
- truncated / 0-byte last.ckpt, resumed. Passes on exit 2 with one error line naming --restart.
- kill at 20%, 50%, 80%: a training with checkpoint_every 5 and log_every 1 is killed with
  SIGKILL once its metrics.csv shows about that fraction of the steps (2 past a checkpoint, so
  that a kill between checkpoints is what is measured), then the same command is run
  again. Passes when the rerun finishes all steps, at most checkpoint_every steps were lost (steps
  logged after the last checkpoint written before the kill) and no ``.tmp`` file is left.

Run:  .venv/bin/python benchmarks/reliability.py      (writes benchmarks/results/reliability.json
      and the "## reliability" section of benchmarks/RESULTS.md; about 2-3 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from results_md import replace_section  # noqa: E402  (benchmarks/ is on sys.path when run)
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent
STEPS = 200
CHECKPOINT_EVERY = 5
KILL_FRACTIONS = (0.2, 0.5, 0.8)
TIMEOUT = 120


def flowcore_command() -> list[str]:
    """The installed ``flowcore`` script beside this interpreter, as a user types it."""
    script = Path(sys.executable).parent / "flowcore"
    return [str(script)] if script.exists() else [sys.executable, "-m", "flowcore.cli"]


@dataclass
class Ran:
    argv: list[str]
    code: int
    stderr: str
    seconds: float

    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def first_line(self) -> str:
        lines = self.lines()
        return lines[0] if lines else ""

    def error_lines(self) -> list[str]:
        return [line for line in self.lines() if line.startswith("flowcore: error")]

    def message(self) -> str:
        """The line a user reads as the outcome: the error line, else the last line of stderr."""
        errors = self.error_lines()
        if errors:
            return errors[0]
        lines = self.lines()
        return lines[-1] if lines else ""

    def one_clear_line(self) -> bool:
        return len(self.error_lines()) == 1 and "Traceback" not in self.stderr


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Ran:
    argv = flowcore_command() + args
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT,
                          env={**os.environ, **(env or {})})
    return Ran(argv, proc.returncode, proc.stderr, round(time.perf_counter() - start, 1))


def write_config(path: Path, out_dir: Path, **train) -> Path:
    path.write_text(yaml.safe_dump({
        "seed": 0, "out_dir": str(out_dir),
        "modalities": {"toy2d": {"role": "generate"}},
        "data": {"dataset": "moons"},
        "model": {"network": "mlp", "hidden": 32, "depth": 2},
        "train": {"steps": STEPS, "batch_size": 64, "cpu_threads": 1, "progress_bar": False,
                  "checkpoint_every": 50, "log_every": 1, "sample_every": 0, **train},
        "sample": {"steps": 4, "count": 16}}))
    return path


def shown(argv: list[str], tmp: Path) -> str:
    """The command as a user would type it, the temporary folder written $TMP."""
    return " ".join(["flowcore", *argv[len(flowcore_command()):]]).replace(str(tmp), "$TMP")


def record(name: str, expected: str, ran: Ran, tmp: Path, passed: bool, **details) -> dict:
    return {"case": name, "expected": expected, "command": shown(ran.argv, tmp), "exit_code": ran.code,
            "stderr_first_line": ran.first_line(), "message": ran.message().replace(str(tmp), "$TMP"),
            "one_clear_line": ran.one_clear_line(), "seconds": ran.seconds, "passed": passed, **details}


def ckpt_step(path: Path) -> int | None:
    """global_step of a Lightning checkpoint this script's own run wrote, or None if unreadable."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])
    except Exception:
        return None


def last_logged_step(run_dir: Path) -> int:
    """The last step whose loss metrics.csv holds (-1 for none)."""
    path = run_dir / "logs" / "metrics.csv"
    steps = [int(row.split(",")[0]) for row in (path.read_text().splitlines()[1:] if path.exists() else [])
             if row.split(",")[0].isdigit() and ",train/loss," in row]
    return max(steps, default=-1)


def tmp_files(run_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*.tmp"))


# ----------------------------------------------------------------------------- cases


def case_diverging(tmp: Path) -> dict:
    out = tmp / "diverging"
    config = write_config(tmp / "diverging.yaml", out)
    ran = run(["train", str(config), "--set", "train.optimizer=sgd", "--set", "train.lr=1e4",
               "--set", "train.grad_clip=0"], tmp)
    weights = out / "model.safetensors"
    if weights.exists():
        finite = all(bool(torch.isfinite(v).all()) for v in load_file(str(weights)).values())
        state = "finite" if finite else "non-finite"
    else:
        state = "absent"
    passed = ran.code != 0 and ran.one_clear_line() and state != "non-finite"
    return record("diverging run", "exit non-zero in one line; model.safetensors finite (or not written)",
                  ran, tmp, passed, weights=state, steps_logged=last_logged_step(out) + 1)


def case_run_code(tmp: Path, trained: Path) -> dict:
    run_dir = tmp / "run_code"
    shutil.copytree(trained, run_dir)
    marker = tmp / "run_code.marker"
    plugin = tmp / "marker_plugin.py"
    plugin.write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n")
    raw = yaml.safe_load((run_dir / "config.yaml").read_text())
    raw["plugins"] = [str(plugin)]
    (run_dir / "config.yaml").write_text(yaml.safe_dump(raw))
    ran = run(["sample", str(run_dir), "--make", "toy2d", "--count", "16", "--out", str(tmp / "run_code_out")], tmp)
    ran_code = marker.exists()
    passed = not ran_code and (ran.code == 0 or (ran.code == 2 and ran.one_clear_line()))
    return record("run dir config lists a plugin file, sampled without --trust-run-code",
                  "the file does not run; samples, or exit 2 in one line", ran, tmp, passed, code_ran=ran_code)


class _Planted:
    """Unpickling it writes a marker file: what a malicious last.ckpt would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def resume_config(tmp: Path, trained: Path, name: str) -> tuple[Path, Path]:
    run_dir = tmp / name
    shutil.copytree(trained, run_dir)
    return write_config(tmp / f"{name}.yaml", run_dir), run_dir


def case_pickle(tmp: Path, trained: Path) -> dict:
    config, run_dir = resume_config(tmp, trained, "pickle")
    marker = tmp / "pickle.marker"
    torch.save({"global_step": 1, "state_dict": _Planted(marker)}, run_dir / "checkpoints" / "last.ckpt")
    ran = run(["train", str(config)], tmp, env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    ran_code = marker.exists()
    passed = not ran_code and ran.code == 2 and ran.one_clear_line()
    return record("planted pickle in last.ckpt, resumed with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1",
                  "the pickle does not run; exit 2 in one line", ran, tmp, passed, code_ran=ran_code)


def case_bad_ckpt(tmp: Path, trained: Path, empty: bool) -> dict:
    name = "empty_ckpt" if empty else "truncated_ckpt"
    config, run_dir = resume_config(tmp, trained, name)
    last = run_dir / "checkpoints" / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(b"" if empty else data[: len(data) // 2])
    ran = run(["train", str(config)], tmp)
    passed = ran.code == 2 and ran.one_clear_line() and "--restart" in ran.message()
    return record(f"{'0-byte' if empty else 'truncated'} last.ckpt, resumed", "exit 2 in one line naming --restart",
                  ran, tmp, passed)


def case_kill(tmp: Path, fraction: float) -> dict:
    out = tmp / f"kill{int(fraction * 100)}"
    config = write_config(tmp / f"kill{int(fraction * 100)}.yaml", out, checkpoint_every=CHECKPOINT_EVERY)
    argv = flowcore_command() + ["train", str(config)]
    target = int(STEPS * fraction) + CHECKPOINT_EVERY // 2  # between two checkpoints, not just after one
    proc = subprocess.Popen(argv, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    start = time.perf_counter()
    while last_logged_step(out) + 1 < target and proc.poll() is None and time.perf_counter() - start < TIMEOUT:
        time.sleep(0.02)
    killed_alive = proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_at_kill = last_logged_step(out) + 1
    saved = ckpt_step(out / "checkpoints" / "last.ckpt")  # None: no readable checkpoint, every step lost
    tmp_after_kill = tmp_files(out)
    ran = run(["train", str(config)], tmp)
    final = ckpt_step(out / "checkpoints" / "last.ckpt")
    finished = ran.code == 0 and final == STEPS
    lost = max(0, done_at_kill - (saved or 0))
    left = tmp_files(out)
    passed = killed_alive and finished and lost <= CHECKPOINT_EVERY and not left
    result = record(f"kill -9 at {int(fraction * 100)}% of the steps, rerun", "finishes; at most "
                    f"{CHECKPOINT_EVERY} steps lost; no .tmp file left", ran, tmp, passed,
                    killed_at_step=done_at_kill, checkpoint_step_at_kill=saved, steps_lost=lost,
                    resumed="resuming from" in ran.stderr, finished=finished, final_step=final,
                    tmp_after_kill=tmp_after_kill, tmp_left=left, killed_while_running=killed_alive)
    result["kill_command"] = shown(argv, tmp) + f"  (SIGKILL after {target} of {STEPS} steps)"
    return result


# ----------------------------------------------------------------------------- results


def write_results_md(payload: dict, path: Path) -> None:
    m = payload["machine"]
    passed = sum(c["passed"] for c in payload["cases"])
    lines = ["## reliability", "",
             f"`{payload['command']}` on {m['cpu']}, {m['cores']} cores, Python {m['python']}, torch {m['torch']}, "
             f"flowcore at {payload['commit']}; {payload['wall_seconds']} s. Each case runs the `flowcore` CLI in a "
             f"subprocess on a tiny toy2d run ({STEPS} steps); $TMP is its temporary folder. "
             f"{passed} of {len(payload['cases'])} cases pass.", "",
             "| case | expected | exit | what the user reads (stderr) | outcome | passed |",
             "|---|---|---|---|---|---|"]
    for c in payload["cases"]:
        if "steps_lost" in c:
            outcome = (f"killed at step {c['killed_at_step']}, checkpoint at {c['checkpoint_step_at_kill']}: "
                       f"{c['steps_lost']} steps lost; rerun {'finished' if c['finished'] else 'did not finish'}"
                       f"{' (resumed)' if c['resumed'] else ''}; .tmp left: {', '.join(c['tmp_left']) or 'none'}")
        elif "weights" in c:
            outcome = f"model.safetensors {c['weights']}; {c['steps_logged']} steps logged"
        elif "code_ran" in c:
            outcome = "the planted code RAN" if c["code_ran"] else "the planted code did not run"
        else:
            outcome = "one error line" if c["one_clear_line"] else "no single error line"
        message = c["message"].replace("|", "\\|")
        lines.append(f"| {c['case']} | {c['expected']} | {c['exit_code']} | `{message[:160]}` | {outcome} | "
                     f"{'yes' if c['passed'] else '**no**'} |")
    lines += ["", "Commands and full records: benchmarks/results/reliability.json."]
    replace_section(path, "reliability", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "reliability.json")
    parser.add_argument("--no-markdown", action="store_true", help="do not touch benchmarks/RESULTS.md")
    args = parser.parse_args()
    wall = time.perf_counter()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="reliability_") as name:
        tmp = Path(name)
        trained = tmp / "trained"
        base = run(["train", str(write_config(tmp / "trained.yaml", trained))], tmp)
        if base.code != 0:
            raise SystemExit(f"the baseline run failed ({base.code}): {base.message()}")
        cases = [case_diverging(tmp), case_run_code(tmp, trained), case_pickle(tmp, trained),
                 case_bad_ckpt(tmp, trained, empty=False), case_bad_ckpt(tmp, trained, empty=True),
                 *[case_kill(tmp, f) for f in KILL_FRACTIONS]]
    payload = {
        "benchmark": "reliability",
        "command": " ".join(["python benchmarks/reliability.py", *sys.argv[1:]]),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "torch": torch.__version__},
        "commit": commit, "wall_seconds": round(time.perf_counter() - wall, 1),
        "passed": sum(c["passed"] for c in cases), "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    if not args.no_markdown:
        write_results_md(payload, ROOT / "RESULTS.md")
    for c in cases:
        print(f"{'PASS' if c['passed'] else 'FAIL'}  {c['case']}: exit {c['exit_code']}, {c['message'][:120]}")


if __name__ == "__main__":
    main()
