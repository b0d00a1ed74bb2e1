"""The shared training loop: it learns, keeps the EMA and the log as documented, and the training
scripts still draw the exact losses the bundled weights were trained with."""

import copy
import itertools

import pytest
import torch

from taylorseer.training.common import TrainingLog, train_loop

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_thread")]


def regression_problem(seed: int = 0):
    """A tiny linear model and endless batches of y = x @ w (no noise): the loss can go to ~0."""
    generator = torch.Generator().manual_seed(seed)
    w = torch.randn(4, 1, generator=generator)

    def data():
        while True:
            x = torch.randn(32, 4, generator=generator)  # (B, 4)
            yield x, x @ w  # (B, 4), (B, 1)

    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 1)
    return model, data()


def run(model, data, steps, log, lr=0.05, ema=None):
    """train_loop with AdamW + one-cycle, the settings the scripts use; returns (ema, losses)."""
    ema = copy.deepcopy(model).requires_grad_(False) if ema is None else ema
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)

    def loss_fn(batch):
        x, y = batch  # (B, 4), (B, 1)
        return ((model(x) - y) ** 2).mean()

    return ema, train_loop(model, ema, loss_fn, data, optimizer, schedule, steps, log)


class Snapshots(TrainingLog):
    """A TrainingLog that also copies the model's and the EMA's parameters at each `step` call."""

    def __init__(self, model, ema):
        super().__init__("test")
        self.model, self.ema, self.calls = model, ema, []

    def step(self, step, loss, every=200):
        super().step(step, loss, every)
        weights = [p.detach().clone() for p in self.model.parameters()]
        self.calls.append((step, loss, weights, [p.clone() for p in self.ema.parameters()]))


def test_train_loop_lowers_the_loss_and_returns_each_steps_loss(capsys):
    model, data = regression_problem()
    log = TrainingLog("test")
    _, losses = run(model, data, 400, log)
    assert len(losses) == 400 and all(isinstance(loss, float) for loss in losses)
    assert losses[0] > 0.5  # a random Linear starts far off
    assert sum(losses[-20:]) / 20 < 1e-3 * losses[0]
    # the log keeps one mean per 200 steps, of exactly the returned losses
    assert log.record["losses"] == [
        [200, round(sum(losses[:200]) / 200, 5)],
        [400, round(sum(losses[200:]) / 200, 5)],
    ]
    assert "step 400: loss" in capsys.readouterr().out


def test_each_step_is_logged_after_the_optimizer_step_and_the_ema_update():
    model, data = regression_problem(seed=1)
    model.eval()  # the loop must switch it to train mode
    ema = copy.deepcopy(model).requires_grad_(False)
    ema_start = [p.clone() for p in ema.parameters()]
    log, steps = Snapshots(model, ema), 30
    _, losses = run(model, data, steps, log, ema=ema)
    assert model.training
    assert [call[0] for call in log.calls] == list(range(steps))
    assert [call[1] for call in log.calls] == losses
    # replay update_ema's documented rule from the model snapshots: the EMA at each log call is
    # lerp(previous EMA, model after this step's update, 1 - min(0.999, (1 + step) / (10 + step)))
    expected = ema_start
    for step, _, weights, ema_seen in log.calls:
        rate = min(0.999, (1 + step) / (10 + step))
        expected = [average.lerp(weight, 1 - rate) for average, weight in zip(expected, weights)]
        for seen, want in zip(ema_seen, expected):
            torch.testing.assert_close(seen, want)
    # a warm-up rate of 0.1 at step 0 moves the EMA off its start but keeps it behind the model
    assert not torch.equal(log.calls[0][3][0], ema_start[0])
    assert not torch.equal(log.calls[-1][3][0], log.calls[-1][2][0])
    assert all(not p.requires_grad for p in ema.parameters())


def test_data_is_advanced_exactly_once_per_step():
    model, data = regression_problem()
    counter = itertools.count()
    counted = ((next(counter), batch)[1] for batch in data)
    run(model, counted, 7, TrainingLog("test"))
    assert next(counter) == 7  # no batch drawn past the last step (it would shift the RNG stream)


def test_the_gradient_norm_is_clipped_to_one():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    batch = (torch.full((8, 4), 100.0), torch.full((8, 1), -1e4))  # a huge gradient

    def loss_fn(b):
        return ((model(b[0]) - b[1]) ** 2).mean()

    ema = copy.deepcopy(model).requires_grad_(False)
    train_loop(model, ema, loss_fn, itertools.repeat(batch), optimizer, schedule, 1, TrainingLog("t"))
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.linalg.vector_norm(after - before) == pytest.approx(1.0, rel=1e-5)  # lr 1 * norm 1


# The first losses of each script at seed 0, batch 16, 3 steps, recorded with the hand-written
# loops the bundled weights were trained with (before `train_loop`): the RNG draws and the update
# order must not change, or `python -m taylorseer.training.*` no longer reproduces the weights.
SCRIPT_LOSSES = {
    "dit_digits": [0.9828940629959106, 1.0807912349700928, 0.9881385564804077],
    "flux_digits": [2.1781418323516846, 1.880790114402771, 1.8028156757354736],
}


@pytest.mark.parametrize("name", sorted(SCRIPT_LOSSES))
def test_the_scripts_reproduce_their_recorded_losses(name, tmp_path, monkeypatch):
    pytest.importorskip("sklearn")  # load_digits
    script = pytest.importorskip(f"taylorseer.training.{name}")
    seen = []

    def recording_loop(*args, **kwargs):
        seen.extend(train_loop(*args, **kwargs))
        return seen

    monkeypatch.setattr(script, "train_loop", recording_loop)
    script.train(3, 0, tmp_path / "out", batch_size=16)
    assert seen == pytest.approx(SCRIPT_LOSSES[name], rel=1e-4)
    assert (tmp_path / "out" / "training.json").exists()


def test_each_variant_trains_its_recipe_with_its_own_size_and_name(tmp_path, monkeypatch):
    from taylorseer.training import dit_digits, flux_digits, variants

    calls = []
    monkeypatch.setattr(dit_digits, "train", lambda *args, **kwargs: calls.append(("dit", args, kwargs)))
    monkeypatch.setattr(flux_digits, "train", lambda *args, **kwargs: calls.append(("flux", args, kwargs)))
    for name, variant in variants.VARIANTS.items():
        variants.train_variant(name, 7, variant.seed, tmp_path)
        recipe, args, kwargs = calls[-1]
        shape = kwargs["architecture"] if recipe == "dit" else kwargs["config"]
        base = dit_digits.ARCHITECTURE if recipe == "dit" else flux_digits.TRANSFORMER_CONFIG
        assert recipe == variant.recipe and args == (7, variant.seed, tmp_path) and kwargs["name"] == name
        assert shape == base | variant.changes and shape != base
    assert all(variant.seed != 0 for variant in variants.VARIANTS.values())  # the recipes' own seed is 0
