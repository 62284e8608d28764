"""Tests for tutorial_lib.isp (notebook 05: unpaired learned ISP)."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch

import tutorial_lib as tl
from tutorial_lib import camera, isp


pytestmark = pytest.mark.usefixtures("one_thread")


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_efficient_isp_shapes_and_parameter_count():
    net = isp.EfficientISP()
    assert sum(p.numel() for p in net.parameters()) == 3060
    out = net(torch.rand(2, 4, 8, 10))
    assert out.shape == (2, 3, 16, 20)
    assert (out >= 0).all()  # last ReLU
    bigger = isp.EfficientISP(width=32)
    assert sum(p.numel() for p in bigger.parameters()) > 3060


def test_efficient_isp_rejects_wrong_input():
    net = isp.EfficientISP()
    with pytest.raises(tl.InputShapeError):
        net(torch.rand(2, 3, 8, 8))
    with pytest.raises(tl.InputShapeError):
        net(torch.rand(4, 8, 8))
    with pytest.raises(tl.TutorialError):
        isp.EfficientISP(width=0)


def test_macs_per_megapixel_matches_hand_count():
    # per packed position: 4*12*9 + 12*12*9 + 12*12*9 = 3024 MACs; 4 Bayer pixels per position
    assert isp.macs_per_megapixel(isp.EfficientISP()) == pytest.approx(3024 / 4 * 1e6)


def test_target_look_changes_colours_but_keeps_range_and_identity_look():
    x = torch.rand(2, 3, 16, 16, generator=_gen())
    y = camera.apply_look(x)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert (y - x).abs().mean() > 0.02
    identity = camera.TargetLook(matrix=((1, 0, 0), (0, 1, 0), (0, 0, 1)), contrast=0.0, saturation=1.0)
    assert torch.allclose(camera.apply_look(x, identity), x, atol=1e-4)
    with pytest.raises(tl.InputShapeError):
        camera.apply_look(torch.rand(2, 4, 8, 8))
    with pytest.raises(tl.TutorialError):
        camera.apply_look(x, camera.TargetLook(matrix=((1, 0), (0, 1))))


def test_recolour_keeps_luma_and_is_seeded():
    x = torch.rand(3, 3, 8, 8, generator=_gen()) * 0.5 + 0.25
    a, b = camera.recolour(x, _gen(1), saturation=(0.5, 0.5)), camera.recolour(x, _gen(1), saturation=(0.5, 0.5))
    assert torch.equal(a, b)
    assert torch.allclose(camera.luminance(a), camera.luminance(x), atol=1e-4)


def test_total_variation_and_content_loss():
    flat = torch.full((1, 3, 8, 8), 0.5)
    assert float(isp.total_variation(flat)) == 0.0
    assert float(isp.total_variation(torch.rand(1, 3, 8, 8, generator=_gen()))) > 0
    fn = isp.FixedFilterFeatures(0)
    x = torch.rand(2, 3, 16, 16, generator=_gen())
    assert float(isp.content_loss(fn.content, x, x)) < 1e-6
    # tolerant of a brightness gain (normalised features), not of a different structure
    gain = float(isp.content_loss(fn.content, x * 0.8, x))
    other = float(isp.content_loss(fn.content, torch.rand(2, 3, 16, 16, generator=_gen(5)), x))
    assert gain < 0.1 * other
    with pytest.raises(tl.InputShapeError):
        isp.content_loss(fn.content, x, x[:, :, :8])


def test_content_loss_gradient_flows_to_output_only():
    fn = isp.FixedFilterFeatures(0)
    out = torch.rand(1, 3, 16, 16, generator=_gen()).requires_grad_(True)
    classic = torch.rand(1, 3, 16, 16, generator=_gen(1)).requires_grad_(True)
    isp.content_loss(fn.content, out, classic).backward()
    assert out.grad is not None and out.grad.abs().sum() > 0
    assert classic.grad is None


def test_rpgan_losses_and_penalties():
    real, fake = torch.tensor([2.0, 1.0]), torch.tensor([0.0, 1.0])
    d = isp.rpgan_d_loss(real, fake)
    expected = (torch.nn.functional.softplus(torch.tensor(-2.0)) + math.log(2)) / 2
    assert float(d) == pytest.approx(float(expected))
    assert float(isp.rpgan_g_loss(real, fake)) > float(d)
    with pytest.raises(tl.InputShapeError):
        isp.rpgan_d_loss(real, torch.zeros(3))
    disc = isp.FeatureDiscriminator(4)
    f = torch.rand(2, 4, 8, 8, generator=_gen())
    pen = isp.gradient_penalty(disc, f)
    assert pen.requires_grad and float(pen.detach()) >= 0
    pen.backward()
    assert disc.net[0].weight.grad is not None and disc.net[0].weight.grad.abs().sum() > 0
    # a discriminator linear in its input has penalty ||w||^2 (mean over positions)
    lin = torch.nn.Conv2d(4, 1, 1, bias=False)

    class Mean(torch.nn.Module):
        def forward(self, x):
            return lin(x).mean(dim=(1, 2, 3))

    expect = float(lin.weight.detach().pow(2).sum()) / 64
    assert float(isp.gradient_penalty(Mean(), f).detach()) == pytest.approx(expect, rel=1e-5)
    with pytest.raises(tl.InputShapeError):
        disc(torch.rand(2, 3, 8, 8))


def test_dynamic_weights_give_unit_norm_terms():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    losses = {"a": (w ** 2).sum() * 100, "b": w.sum()}
    weights, grads = isp.dynamic_weights(losses, [w])
    ga, gb = 100 * 2 * torch.tensor([1.0, 2.0]), torch.ones(2)
    assert weights["a"] == pytest.approx(1 / float(ga.norm()), rel=1e-5)
    assert weights["b"] == pytest.approx(1 / float(gb.norm()), rel=1e-5)
    assert torch.allclose(grads[0], ga / ga.norm() + gb / gb.norm(), atol=1e-5)
    weights, grads = isp.dynamic_weights({"a": (w ** 2).sum(), "b": w.sum()}, [w], scales={"b": 0.0})
    assert torch.allclose(grads[0], torch.tensor([1.0, 2.0]) / math.sqrt(5), atol=1e-5)
    with pytest.raises(tl.TutorialError):
        isp.dynamic_weights({}, [w])


def test_fallback_features_are_deterministic_and_shaped():
    a, b = isp.FixedFilterFeatures(3), isp.FixedFilterFeatures(3)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
    assert not any(p.requires_grad for p in a.parameters())
    g = torch.rand(2, 1, 16, 16, generator=_gen())
    t0, t1 = a.texture(g)
    assert t0.shape == (2, a.texture_channels[0], 16, 16)
    assert t1.shape == (2, a.texture_channels[1], 8, 8)
    c = a.colour(torch.rand(2, 3, 16, 16, generator=_gen()))
    assert c.shape == (2, a.colour_channels, 8, 8)
    a.train()
    assert not a.training
    with pytest.raises(tl.InputShapeError):
        a.texture(torch.rand(2, 3, 16, 16))


def test_feature_networks_choice(tmp_path, monkeypatch):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        assert not isp.pretrained_available()
        nets, why = isp.feature_networks("auto")
        assert isinstance(nets, isp.FixedFilterFeatures) and "fallback" in why and "fetch_feature_weights" in why
        with pytest.raises(tl.TutorialError, match="fetch_feature_weights"):
            isp.feature_networks("pretrained")
        with pytest.raises(tl.TutorialError):
            isp.feature_networks("imagenet")
        # a file with the right name but wrong content is refused (checksum prefix)
        folder = isp.hub_checkpoint_dir()
        folder.mkdir(parents=True)
        (folder / isp.PRETRAINED_FILES["alexnet"].filename).write_bytes(b"not weights")
        with pytest.raises(tl.TutorialError, match="corrupt"):
            isp.pretrained_path("alexnet")
        with pytest.raises(tl.TutorialError):
            isp.pretrained_path("resnet")
    finally:
        torch.hub.set_dir(old)


def test_pretrained_file_spec_matches_torchvision_names():
    from torchvision.models import AlexNet_Weights, VGG19_Weights

    spec = isp.PRETRAINED_FILES["vgg19"]
    assert spec.sha256_prefix == "dcbb9e9d"
    assert spec.url == VGG19_Weights.IMAGENET1K_V1.url
    assert isp.PRETRAINED_FILES["alexnet"].url == AlexNet_Weights.IMAGENET1K_V1.url


def test_make_phone_set_and_classic_isp():
    gen = _gen(0)
    params = camera.random_camera(gen)
    rgb = torch.rand(2, 3, 16, 16, generator=_gen(1)) * 0.8 + 0.1
    ps = isp.make_phone_set(rgb, params, gen, noise=False)
    assert ps.raw.shape == (2, 4, 8, 8) and ps.classic.shape == rgb.shape and ps.truth.shape == rgb.shape
    assert torch.allclose(ps.truth, camera.apply_look(rgb))
    noisy = isp.make_phone_set(rgb, params, _gen(2), noise=True, noise_scale=0.5)
    assert len(noisy.noise) == 2 and not torch.equal(noisy.raw, ps.raw)
    with pytest.raises(tl.InputShapeError):
        isp.make_phone_set(torch.rand(1, 3, 15, 16), params, gen)


def test_train_paired_reduces_loss_and_render():
    gen = _gen(0)
    params = camera.random_camera(gen)
    rgb = torch.rand(8, 3, 16, 16, generator=_gen(1)) * 0.8 + 0.1
    ps = isp.make_phone_set(rgb, params, gen, noise=False)
    net = isp.EfficientISP()
    before = float((isp.render(net, ps.raw) - ps.truth).abs().mean())
    extra = isp.train_paired(net, ps.raw, ps.truth, steps=60, batch_size=4, lr=5e-3, seed=0)
    after = float((isp.render(net, ps.raw) - ps.truth).abs().mean())
    assert after < before and len(extra.history["loss"]) > 1
    with pytest.raises(tl.InputShapeError):
        isp.train_paired(net, ps.raw, ps.truth[:, :, :8, :8], steps=1)


def test_autocast_only_on_cuda():
    with isp.autocast("cpu"):
        y = torch.nn.functional.linear(torch.rand(2, 3), torch.rand(4, 3))
    assert y.dtype == torch.float32


def test_fetch_script_fails_clearly_offline(monkeypatch, tmp_path, capsys):
    import urllib.error

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    path = Path(__file__).resolve().parents[1] / "data_scripts" / "fetch_feature_weights.py"
    spec = importlib.util.spec_from_file_location("fetch_feature_weights", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        monkeypatch.setattr("sys.argv", ["fetch_feature_weights.py", "--only", "alexnet"])
        assert module.main() == 1
    finally:
        torch.hub.set_dir(old)
    err = capsys.readouterr().err
    assert "name resolution" in err and "offline" in err and isp.PRETRAINED_FILES["alexnet"].url in err


def test_checkerboard_patches_are_disjoint_seeded_and_checked():
    h, w, block, p = 64, 96, 16, 8
    coords = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w) / (h * w)
    photos = {"ramp": coords.expand(1, 3, h, w)[0].clone()}
    a = isp.checkerboard_patches(photos, 0, p, 20, seed=3, block=block)
    b = isp.checkerboard_patches(photos, 1, p, 20, seed=4, block=block)
    assert a.shape == b.shape == (20, 3, p, p)
    assert torch.equal(a, isp.checkerboard_patches(photos, 0, p, 20, seed=3, block=block))

    def cells(patches):  # the checkerboard cell of every pixel, recovered from the ramp value
        idx = (patches[:, 0] * h * w).round().long()
        return ((idx // w) // block + (idx % w) // block) % 2

    assert (cells(a) == 0).all() and (cells(b) == 1).all()  # no pixel shared between the two sets
    with pytest.raises(tl.TutorialError):
        isp.checkerboard_patches(photos, 2, p, 4)
    with pytest.raises(tl.TutorialError):
        isp.checkerboard_patches(photos, 0, 32, 4, block=16)
    with pytest.raises(tl.TutorialError):
        isp.checkerboard_patches({}, 0, p, 4)
    with pytest.raises(tl.InputShapeError):
        isp.checkerboard_patches({"small": torch.rand(3, 20, 20)}, 1, p, 4, block=16)


def test_macs_per_megapixel_counts_transposed_convolutions():
    # each of the 8x8 input positions feeds a 2x2 patch of 3 outputs from 4 channels: 48 MACs;
    # 3072 MACs over a 16x16 Bayer image = 12 per Bayer pixel
    up = torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 3, 2, stride=2))
    assert isp.macs_per_megapixel(up, raw_size=8) == pytest.approx(12e6)


def _tiny_sets(seed=0, n=6, size=16):
    photos = {"a": torch.rand(3, 64, 64, generator=_gen(seed)), "b": torch.rand(3, 64, 64, generator=_gen(seed + 1))}
    params = camera.random_camera(_gen(7))
    return isp.unpaired_training_sets(photos, params, camera.DEFAULT_LOOK, patch=size, per_image=n, block=32,
                                      seed=seed, noise_scale=0.02)


def test_unpaired_recipe_defaults_to_the_paper_and_rejects_unknown_parts():
    paper = isp.UnpairedRecipe()
    assert paper.critics == isp.PAPER_CRITICS and paper.fade_margin == 0 and dict(paper.scales) == {}
    assert isp.UnpairedRecipe(scales={"tv": 0.3}).as_dict()["scales"] == {"tv": 0.3}
    with pytest.raises(tl.TutorialError, match="critics"):
        isp.UnpairedRecipe(critics=("texture 0", "sharpness"))
    with pytest.raises(tl.TutorialError, match="critics"):
        isp.UnpairedRecipe(critics=())
    with pytest.raises(tl.TutorialError, match="Unknown term"):
        isp.UnpairedRecipe(scales={"colour": 0.5})
    with pytest.raises(tl.TutorialError, match="fade_margin"):
        isp.UnpairedRecipe(fade_margin=-1)


def test_critic_loss_is_the_relativistic_loss_plus_half_gamma_r1_r2():
    feats = isp.FixedFilterFeatures(0)
    images = torch.rand(4, 3, 16, 16, generator=_gen(1))
    fr = isp.critic_features(feats, images, isp.ALL_CRITICS)
    ff = isp.critic_features(feats, images.flip(-1) * 0.8, isp.ALL_CRITICS)
    assert list(fr) == list(isp.ALL_CRITICS) and fr["tone"].shape == (4, 4, 2, 2)
    torch.manual_seed(0)
    critics = {k: isp.FeatureDiscriminator(v.shape[1], width=4) for k, v in fr.items()}
    gamma = 3.0
    want = sum(isp.rpgan_d_loss(D(fr[k]), D(ff[k])) + gamma / 2 * (isp.gradient_penalty(D, fr[k]) +
                                                                    isp.gradient_penalty(D, ff[k]))
               for k, D in critics.items())
    got = isp.critic_loss(critics, fr, ff, gamma)
    assert torch.allclose(got, want)
    # the penalties reach the critics' weights (double backward)
    g_with = torch.autograd.grad(isp.critic_loss(critics, fr, ff, gamma), list(critics["colour"].parameters()))
    g_without = torch.autograd.grad(isp.critic_loss(critics, fr, ff, 0.0), list(critics["colour"].parameters()))
    assert any(not torch.allclose(a, b) for a, b in zip(g_with, g_without))


def test_unpaired_run_trains_only_its_critics_and_fading_lowers_a_weight():
    phone, dslr = _tiny_sets()
    warm = isp.EfficientISP()
    feats = isp.FixedFilterFeatures(0)
    for recipe in (isp.UnpairedRecipe(critics=("texture 0", "colour")),
                   isp.UnpairedRecipe(critics=isp.ALL_CRITICS, fade_margin=0.05, scales={"tv": 0.3})):
        torch.manual_seed(0)
        run = isp.UnpairedRun(warm, feats, recipe, ema_decay=0.5, n_snapshots=3, steps=6, probe=dslr[:2])
        before = [p.clone() for p in run.net.parameters()]
        hist = run.train(phone, dslr, steps=6, batch_size=4, g_lr=1e-3, d_lr=1e-3, gamma=0.2, seed=1)
        assert set(hist["loss"]) == {"content", "tv"} | {f"adv {c}" for c in recipe.critics}
        assert set(run.modules()) == {"ema", "last", "snapshot_0", "snapshot_1", "snapshot_2"} | {
            f"critic_{c.replace(' ', '_')}" for c in recipe.critics}
        assert hist["snapshot_steps"] == [0, 3, 6]
        assert any(not torch.equal(a, b) for a, b in zip(before, run.net.parameters()))
        # snapshot 0 is the warm start, the last one the final EMA
        assert all(torch.equal(a, b) for a, b in zip(run.snapshots[0].parameters(), warm.parameters()))
        assert all(torch.equal(a, b) for a, b in zip(run.snapshots[-1].parameters(), run.averaged.parameters()))
    # fading: a term whose L_G sits at log 2 gets no weight, one far from it keeps its scale
    seen = []
    def spy(losses, params, scales):
        seen.append(dict(scales))
        return isp.dynamic_weights(losses, params, scales=scales)
    torch.manual_seed(0)
    run = isp.UnpairedRun(warm, feats, isp.UnpairedRecipe(fade_margin=0.05), ema_decay=0.0, n_snapshots=1, steps=1)
    run.train(phone, dslr, steps=1, batch_size=4, g_lr=1e-3, d_lr=1e-3, gamma=0.2, seed=1, weights_fn=spy)
    g = run.history["loss"]
    for c in isp.PAPER_CRITICS:
        margin = abs(g[f"adv {c}"][0] - math.log(2)) / math.log(2)
        assert seen[0][f"adv {c}"] == pytest.approx(min(1.0, margin / 0.05), abs=1e-3)


def test_learned_features_train_their_filters_deterministically():
    phone, dslr = _tiny_sets(n=8)
    a = isp.LearnedFeatures(dslr, seed=0, steps=5, batch_size=4)
    fixed = isp.FixedFilterFeatures(0)
    assert torch.equal(a.gabor, fixed.gabor)  # before build: the fixed filters
    info = a.build()
    assert not torch.equal(a.gabor, fixed.gabor) and len(info["loss"]) >= 1
    b = isp.LearnedFeatures(dslr, seed=0, steps=5, batch_size=4)
    b.build()
    assert torch.equal(a.proj, b.proj) and torch.equal(a.colour_proj, b.colour_proj)
    assert not any(p.requires_grad for p in a.parameters())
    with pytest.raises(tl.TutorialError):
        isp.LearnedFeatures(torch.rand(2, 1, 8, 8))


def test_ablation_study_reads_the_notebook_profile_and_its_recorded_table_matches_it():
    from tutorial_lib import isp_study

    smoke = isp_study.notebook_profile("smoke")
    assert smoke["gan_steps"] > 0 and "patch" in smoke
    with pytest.raises(tl.TutorialError, match="No profile"):
        isp_study.notebook_profile("huge")
    recorded = isp_study.load_recorded()
    assert recorded["settings"] == isp_study.notebook_profile(recorded["profile"])
    assert recorded["profile"] == "laptop" and set(recorded["seeds"]) == {"0", "1"}
    assert recorded["variants"] == list(isp_study.VARIANTS)
    rows = isp_study.table(recorded)
    assert rows["paper"]["PSNR − paper (mean)"] == 0.0
    for seed, res in recorded["seeds"].items():
        assert res["paper"]["psnr"] == pytest.approx(rows["paper"][f"PSNR s{seed}"])


def test_ablation_study_runs_its_variants_on_the_same_warm_start():
    from tutorial_lib import isp_study

    cfg = isp_study.notebook_profile("smoke")
    out = isp_study.run_seed(cfg, 0, {k: isp_study.VARIANTS[k] for k in ("paper", "paper without colour")})
    assert set(out) == {"warm start", "classic ISP", "paper", "paper without colour"}
    for name in ("paper", "paper without colour"):
        assert out[name]["curve"][0] == pytest.approx(out["warm start"]["psnr"], abs=1e-3)  # snapshot 0 = the warm start
        assert out[name]["psnr"] == pytest.approx(max(out[name]["curve"]), abs=1e-3)  # the best on validation


def test_efficient_isp_seed_fixes_the_initial_weights_and_leaves_the_global_stream_alone():
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    a = isp.EfficientISP(seed=3)
    after = torch.rand(1)
    b = isp.EfficientISP(seed=3)
    assert torch.equal(before, after)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(isp.EfficientISP(seed=4).conv1.weight, a.conv1.weight)


def test_shoot_gives_the_phone_set_of_a_split_and_its_names():
    params = camera.random_camera(_gen(7))
    shot, names = isp.shoot("isp_val", params, side=32, seed=4, noise_scale=0.02)
    again, _ = isp.shoot("isp_val", params, side=32, seed=4, noise_scale=0.02)
    assert names == list(tl.data.PHOTO_SPLITS["isp_val"]) and shot.raw.shape == (len(names), 4, 16, 16)
    assert torch.equal(shot.raw, again.raw) and shot.truth.shape == (len(names), 3, 32, 32)
