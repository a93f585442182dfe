"""On-policy distillation (flowcore/train/distill.py), against a field whose trajectories are known in closed form.

The network is v(x, t) = a x (one learnable scalar a) and its sampling aid adds b x in eval
mode. Euler from t = 1 in steps of dt = -1/n multiplies the state by (1 + a dt) per step, so the
rollout's states are x_1 (1 + a dt)^k: the student's own a, not the aided a + b. The teacher is
the aided field of the weights frozen at the start, (a_0 + b) x; minimising the distillation
loss must take the student's a to a_0 + b.
"""

from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch import nn

from flowcore.errors import ConfigError
from flowcore.train.bundle import build_bundles
from flowcore.train.config import load_config
from flowcore.train.distill import OnPolicyDistillation
from flowcore.train.pipeline import train

pytestmark = pytest.mark.usefixtures("one_thread")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "configs"


class ScaledField(nn.Module):
    """v = a x, plus b x in eval mode unless ``unaided()``."""

    def __init__(self, a: float, b: float):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))
        self.b, self.aided = b, True

    @contextmanager
    def unaided(self):
        self.aided = False
        try:
            yield self
        finally:
            self.aided = True

    def forward(self, tokens, times):
        scale = self.a + (self.b if self.aided and not self.training else 0.0)
        return {m: scale * tok.values for m, tok in tokens.items()}


def scaled_field(shapes, b: float = 1.0) -> ScaledField:
    """A plugin-network factory (``model.network: test_train_distill:scaled_field``); a is loaded."""
    return ScaledField(a=0.0, b=b)


def _distiller(registry, tmp_path, **distill):
    overrides = [f"out_dir={tmp_path}", "sample.solver=euler", "sample.steps=10", "sample.shift=1",
                 *(f"distill.{k}={v}" for k, v in {"start_step": 0, "samples": 3, "states": 4, **distill}.items())]
    config = load_config(EXAMPLES / "toy2d.yaml", overrides, registry)
    bundles = build_bundles(config, registry)
    batch = {"toy2d": bundles["toy2d"].layout(5)}
    return OnPolicyDistillation(config, bundles), batch


def test_rollout_states_are_the_unaided_students_trajectory(registry, tmp_path):
    distiller, batch = _distiller(registry, tmp_path)
    student = ScaledField(a=0.7, b=5.0)
    distiller.rollout(student, batch, torch.device("cpu"))
    assert len(distiller.queue) == 4 and student.aided and student.training
    states = {round(t, 6): x["toy2d"] for _, t, x in distiller.queue}
    assert all(t <= 0.5 for t in states) and all(x.shape == (3, 1, 2) for x in states.values())
    (t1, x1), (t2, x2) = sorted(states.items())[:2]
    steps = round((t2 - t1) * 10)  # from t2 down to t1, dt = -0.1
    assert torch.allclose(x1, x2 * (1 - 0.1 * 0.7) ** steps, rtol=1e-5)  # a, not a + b


def test_the_student_learns_the_aided_field_of_the_frozen_teacher(registry, tmp_path):
    distiller, batch = _distiller(registry, tmp_path, states=8)
    student = ScaledField(a=0.3, b=0.5)
    distiller.start(student)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.5)
    for _ in range(200):
        loss = distiller.loss(student, batch, torch.device("cpu"))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert abs(distiller.teacher.a.item() - 0.3) < 1e-7  # frozen
    assert abs(student.a.item() - 0.8) < 1e-3  # a_0 + b
    assert distiller.rollouts == 40  # 8 states asked, but only 5 grid times are <= 0.5: 200 / 5


def test_the_loss_averages_each_sample_over_its_own_tokens_then_the_samples(registry, tmp_path):
    """Two samples, 3 real tokens at x = 1 and 1 real token at x = 2 (padding at x = 100): the student
    a x misses the teacher (a_0 + b) x by b x, so the loss is b^2 (1 + 4) / 2, not b^2 (3 + 4) / 4."""
    from flowcore.modality import Tokens

    distiller, _ = _distiller(registry, tmp_path)
    student = ScaledField(a=0.3, b=0.5)
    distiller.start(student)
    mask = torch.tensor([[True, True, True], [True, False, False]])
    values = torch.tensor([[1.0, 1.0, 1.0], [2.0, 100.0, 100.0]])[..., None].expand(2, 3, 2).contiguous()
    layout = Tokens(torch.zeros_like(values), torch.arange(3.0).expand(2, 3)[..., None], mask)
    distiller.queue.append(({"toy2d": layout}, 0.2, {"toy2d": values}))
    loss = distiller.loss(student, {"toy2d": layout}, torch.device("cpu"))
    assert loss.item() == pytest.approx(0.25 * (1 + 4) / 2, rel=1e-6)


def test_a_restored_distiller_draws_what_the_original_would(registry, tmp_path):
    """state_dict / load_state_dict: the queued states, the RNGs and the count come back, so the next
    losses and the next rollout are the ones the original gives."""
    original, batch = _distiller(registry, tmp_path, states=3)
    student = ScaledField(a=0.3, b=0.5)
    original.start(student)
    original.loss(student, batch, torch.device("cpu"))  # one rollout, one of its 3 states used
    restored, _ = _distiller(registry, tmp_path, states=3)
    restored.start(student)
    state = original.state_dict()
    restored.load_state_dict(state)
    assert restored.rollouts == 1 and len(restored.queue) == 2
    for _ in range(4):  # two queued states, then a fresh rollout drawn from the restored RNGs
        a, b = original.loss(student, batch, torch.device("cpu")), restored.loss(student, batch, torch.device("cpu"))
        assert torch.equal(a, b)
    assert [t for _, t, _ in original.queue] == [t for _, t, _ in restored.queue]
    assert all(torch.equal(x["toy2d"], y["toy2d"]) for (_, _, x), (_, _, y) in zip(original.queue, restored.queue))


def test_distill_runs_inside_training_and_its_teacher_survives_a_resume(registry, tmp_path):
    overrides = [f"out_dir={tmp_path / 'run'}", "train.steps=6", "train.checkpoint_every=3", "train.progress_bar=false",
                 "train.sample_every=0", "distill.start_step=2", "distill.states=2", "sample.steps=8",
                 "model.hidden=16", "model.depth=1"]
    config = load_config(EXAMPLES / "toy2d.yaml", overrides, registry)
    module = train(config, registry)
    assert module.distiller.rollouts == 2  # steps 2-5: four distillation steps, two per rollout
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    teacher = ckpt["distill_teacher"]
    assert all(torch.equal(teacher[k], v) for k, v in module.distiller.teacher.state_dict().items())
    # the EMA has moved on since step 2: a resume that froze a new teacher would differ from the saved one
    assert any(not torch.equal(teacher[k], v) for k, v in module.sampler_net.state_dict().items())
    longer = load_config(EXAMPLES / "toy2d.yaml", [*overrides[:1], "train.steps=8", *overrides[2:]], registry)
    resumed = train(longer, registry)
    assert all(torch.equal(teacher[k], v) for k, v in resumed.distiller.teacher.state_dict().items())
    # the rollout count went on from the saved 2 (steps 6-7 use one more rollout), not from 0
    assert ckpt["distill_state"]["rollouts"] == 2 and resumed.distiller.rollouts == 3


@pytest.mark.parametrize("key, value, message", [
    ("distill.t_max", 0, "t_max"), ("distill.samples", 0, "samples"), ("distill.ema", 1.0, "distill.ema")])
def test_bad_distill_settings_are_refused_by_name(registry, tmp_path, key, value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(EXAMPLES / "toy2d.yaml", [f"out_dir={tmp_path}", "distill.start_step=0", f"{key}={value}"],
                    registry)


def test_distill_needs_every_modality_generated(registry, tmp_path):
    with pytest.raises(ConfigError, match="modalities.label.role"):
        load_config(EXAMPLES / "toy2d_labeled.yaml", [f"out_dir={tmp_path}", "distill.start_step=0"], registry)


def test_distill_lr_takes_over_at_the_start_step(registry, tmp_path):
    from flowcore.train.module import lr_lambda, make_optimizer

    config = load_config(EXAMPLES / "toy2d.yaml", [f"out_dir={tmp_path}", "train.lr=0.001", "distill.start_step=100",
                                                   "distill.lr=0.0002"], registry)
    schedule = make_optimizer([nn.Parameter(torch.zeros(1))], config)["lr_scheduler"]["scheduler"].lr_lambdas[0]
    tr = config.train
    assert schedule(99) == lr_lambda(99, tr.warmup_steps, tr.steps, tr.schedule)
    assert schedule(100) == pytest.approx(0.2) and schedule(5000) == pytest.approx(0.2)


def test_sample_unaided_turns_the_aids_off_and_back_on(registry, tmp_path):
    from flowcore.train.sampling import SamplingOptions, generate

    distiller, _ = _distiller(registry, tmp_path)
    bundles = distiller.bundles
    net = ScaledField(a=0.5, b=1.0).eval()
    options = SamplingOptions(steps=10, solver="euler", seed=3)
    aided = generate(net, bundles, ["toy2d"], {}, 4, options)["toy2d"].values
    alone = generate(net, bundles, ["toy2d"], {}, 4, options.replace(unaided=True))["toy2d"].values
    assert torch.allclose(alone / aided, torch.tensor((0.95 / 0.85) ** 10),  # (1 - a/10)^10 vs (1 - (a+b)/10)^10
                          rtol=1e-5)
    assert net.aided
