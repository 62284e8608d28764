import pytest
import torch
from torch import nn

import tutorial_lib as tl
from tutorial_lib import gan, isp, mid, models, restoration


def test_evaluating_restores_each_mode_even_after_an_error():
    a, b = nn.Dropout(0.5), nn.Dropout(0.5)
    b.eval()
    with models.evaluating(a, b):
        assert not a.training and not b.training
    assert a.training and not b.training
    with pytest.raises(RuntimeError, match="boom"):
        with models.evaluating(a):
            raise RuntimeError("boom")
    assert a.training


def test_batched_apply_matches_one_pass_and_leaves_the_mode_alone():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3))
    x = torch.randn(37, 4)
    with models.evaluating(net), torch.no_grad():
        whole = net(x)
    for batch in (1, 5, 37, 100):
        out = models.batched_apply(net, x, batch)
        assert out.shape == (37, 3) and not out.requires_grad
        torch.testing.assert_close(out, whole)
    assert net.training
    top = models.batched_apply(net, x, 8, fn=lambda xb: net(xb).argmax(1))
    assert torch.equal(top, whole.argmax(1))
    with pytest.raises(tl.TutorialError, match="batch_size"):
        models.batched_apply(net, x, 0)


def test_every_evaluation_helper_restores_training_mode():
    G = gan.Generator(8, (1, 8, 8), [16])
    clf = models.DigitClassifier(size=8)
    restorer = restoration.AllInOneRestorer(width=8)
    denoiser = mid.Denoiser(width=8)
    cam = isp.EfficientISP()
    for m in (G, clf, restorer, denoiser, cam):
        m.train()
    gan.sample(G, torch.randn(5, 8))
    clf.predict(torch.rand(5, 1, 8, 8))
    restorer.restore(torch.rand(2, 3, 16, 16))
    mid.denoise(denoiser, torch.rand(1, 3, 16, 16), alpha=0.5, masks=2, gen=torch.Generator().manual_seed(0))
    mid.denoise_blind(denoiser, torch.rand(1, 3, 16, 16), alpha=0.5, masks=2, gen=torch.Generator().manual_seed(0))
    isp.render(cam, torch.rand(2, 4, 8, 8))
    assert all(m.training for m in (G, clf, restorer, denoiser, cam))


def test_ema_model_is_the_exponential_average_from_the_start_weights():
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    avg = models.ema_model(net, 0.9)
    expected = {k: v.clone() for k, v in start.items()}
    for _ in range(5):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        avg.update_parameters(net)
        expected = {k: 0.9 * expected[k] + 0.1 * net.state_dict()[k] for k in expected}
    for k, v in avg.module.state_dict().items():
        torch.testing.assert_close(v, expected[k])
    with pytest.warns(UserWarning, match="still holds"):
        models.ema_model(net, 0.99, steps=20)
    with pytest.raises(tl.TutorialError, match="decay"):
        models.ema_model(net, 1.0)


def test_every_training_function_returns_a_train_record():
    from tutorial_lib import data

    digits = data.load_digits()
    records = [models.train_classifier(models.DigitClassifier(), digits.x_train[:64], digits.y_train[:64], epochs=2),
               gan.train_gan(*gan.build_gan({"size": 8, "z_dim": 4, "g_hidden": [8], "d_hidden": [8], "seed": 0}),
                             digits.x_train[:32], steps=3, batch_size=8, desc=None, log_every=1)]
    for rec in records:
        assert isinstance(rec, models.TrainRecord) and rec.seconds >= 0 and rec.cpu_seconds >= 0
        assert len(rec.history["step"]) >= 2
        assert set(rec.as_dict()) == {"history", "seconds", "cpu_seconds"}
