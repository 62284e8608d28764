import pytest
import torch

import tutorial_lib as tl
from tutorial_lib import degradations as dg


def clean(n=4, c=3, s=16, seed=0):
    return torch.rand((n, c, s, s), generator=torch.Generator().manual_seed(seed))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("task", dg.TASKS)
def test_degrade_is_seeded_in_range_and_changes_image(task):
    x = clean()
    a, b = dg.degrade(x, task, gen(1)), dg.degrade(x, task, gen(1))
    c = dg.degrade(x, task, gen(2))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert float((a - x).abs().mean()) > 0.01


def test_noise_has_requested_sigma():
    x = torch.full((8, 3, 32, 32), 0.5)
    y = dg.add_noise(x, gen(), sigma=25 / 255)
    assert abs(float((y - x).std()) - 25 / 255) < 0.005
    assert torch.equal(dg.add_noise(x, gen(), sigma=0.0), x)


def test_rain_only_brightens_and_is_streaky():
    x = torch.full((4, 3, 32, 32), 0.3)
    y = dg.add_rain(x, gen())
    assert bool((y >= x - 1e-6).all())
    # the streak layer is the same in every channel (white rain)
    diff = y - x
    assert torch.allclose(diff[:, 0], diff[:, 1]) and torch.allclose(diff[:, 1], diff[:, 2])


def test_line_kernels_sum_to_one():
    k = dg.line_kernels(torch.tensor([0.0, 20.0]), torch.tensor([5.0, 9.0]), 11)
    assert k.shape == (2, 1, 11, 11)
    assert torch.allclose(k.sum(dim=(1, 2, 3)), torch.ones(2))
    with pytest.raises(tl.TutorialError):
        dg.line_kernels(torch.tensor([0.0]), torch.tensor([5.0]), 10)


def test_haze_follows_scattering_model():
    x = clean()
    hazy, t, a = dg.add_haze(x, gen(), return_parts=True)
    assert torch.allclose(hazy, (x * t + a * (1 - t)).clamp(0, 1), atol=1e-6)
    assert float(t.min()) > 0 and float(t.max()) < 1
    # beta = 0 means no haze at all
    assert torch.allclose(dg.add_haze(x, gen(), beta=(0.0, 0.0)), x, atol=1e-6)


def test_smooth_depth_is_smooth_and_normalised():
    d = dg.smooth_depth(3, 32, 32, gen())
    assert d.shape == (3, 1, 32, 32)
    assert float(d.min()) >= 0 and float(d.max()) <= 1
    assert float((d[..., 1:] - d[..., :-1]).abs().max()) < 0.2


def test_make_pairs_and_select():
    x = clean(n=5)
    pairs = dg.make_pairs(x, seed=3)
    assert len(pairs) == 15 and pairs.tasks == dg.TASKS
    haze = pairs.select("haze")
    assert len(haze) == 5 and bool((haze.task == 2).all())
    # one task's pairs do not depend on which other tasks are present
    only = dg.make_pairs(x, tasks=("haze",), seed=3)
    assert torch.equal(only.degraded, haze.degraded)
    assert "haze:5" in pairs.describe()
    with pytest.raises(tl.TutorialError):
        pairs.select("snow")


def test_bad_inputs_give_clear_errors():
    with pytest.raises(tl.InputShapeError):
        dg.add_noise(torch.rand(3, 8, 8), gen())
    with pytest.raises(tl.InputShapeError):
        dg.add_noise(torch.rand(1, 2, 8, 8), gen())
    with pytest.raises(tl.InputShapeError):
        dg.add_haze(torch.full((1, 3, 8, 8), 2.0), gen())
    with pytest.raises(tl.InputShapeError):
        dg.add_rain(torch.zeros((1, 3, 8, 8), dtype=torch.uint8), gen())
    with pytest.raises(tl.TutorialError):
        dg.add_noise(clean(), 3)  # not a generator
    with pytest.raises(tl.TutorialError):
        dg.add_noise(clean(), gen(), sigma=25)
    with pytest.raises(tl.TutorialError):
        dg.degrade(clean(), "snow", gen())
    with pytest.raises(tl.TutorialError):
        dg.add_rain(clean(), gen(), length=(9.0, 3.0))
    with pytest.raises(tl.TutorialError):
        dg.add_haze(clean(), gen(), airlight=(0.5, 1.5))
    with pytest.raises(tl.TutorialError):
        dg.make_pairs(clean(), tasks=())
