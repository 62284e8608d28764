import pytest

import tutorial_lib as tl
from tutorial_lib.profiles import ProfileSet, default_profile

PROFILES = ProfileSet("t", smoke=dict(steps=2, lr=1e-3, name="a", flag=False),
                      laptop=dict(steps=20, lr=1e-3, name="a", flag=False),
                      gpu=dict(steps=200, lr=1e-3, name="a", flag=True))


def test_resolve_and_attributes():
    cfg = PROFILES.resolve("laptop")
    assert cfg.name == "laptop" and cfg.steps == 20 and cfg["lr"] == 1e-3
    assert cfg.to_dict() == {"profile": "laptop", "steps": 20, "lr": 1e-3, "name": "a", "flag": False}
    assert PROFILES.resolve(" SMOKE ").name == "smoke"


def test_overrides_are_validated():
    assert PROFILES.resolve("smoke", steps=5).steps == 5
    assert PROFILES.resolve("smoke", lr=1).lr == 1  # an int where a float is expected is fine
    with pytest.raises(tl.ProfileError, match="Valid settings: flag, lr, name, steps"):
        PROFILES.resolve("smoke", stpes=5)
    with pytest.raises(tl.ProfileError, match="expects a value like 2"):
        PROFILES.resolve("smoke", steps="5")
    with pytest.raises(tl.ProfileError, match="expects"):
        PROFILES.resolve("smoke", flag=1)


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(tl.ProfileError, match="smoke, laptop, gpu"):
        PROFILES.resolve("fast")
    with pytest.raises(tl.ProfileError):
        PROFILES.resolve(None if False else 3)  # type: ignore[arg-type]


def test_config_is_frozen_and_reports_unknown_attribute():
    cfg = PROFILES.resolve("gpu")
    with pytest.raises(AttributeError, match="frozen"):
        cfg.steps = 1
    with pytest.raises(AttributeError, match="Settings: flag, lr, name, steps"):
        cfg.stepz
    assert cfg.replace(steps=1).steps == 1
    with pytest.raises(tl.ProfileError):
        cfg.replace(nope=1)


def test_profile_sets_must_be_complete_and_consistent():
    with pytest.raises(tl.ProfileError, match="missing"):
        ProfileSet("t", smoke={}, laptop={})
    with pytest.raises(tl.ProfileError, match="different settings"):
        ProfileSet("t", smoke=dict(a=1), laptop=dict(a=1, b=2), gpu=dict(a=1, b=2))


def test_default_profile_from_environment(monkeypatch):
    monkeypatch.delenv("TUTORIAL_PROFILE", raising=False)
    assert default_profile() == "laptop"
    monkeypatch.setenv("TUTORIAL_PROFILE", "smoke")
    assert default_profile() == "smoke" and PROFILES.resolve().name == "smoke"
    monkeypatch.setenv("TUTORIAL_PROFILE", "huge")
    with pytest.raises(tl.ProfileError, match="TUTORIAL_PROFILE='huge' is invalid"):
        default_profile()


def test_table_shows_all_profiles():
    table = PROFILES.table()
    assert list(table.columns) == ["smoke", "laptop", "gpu"] and table.loc["steps", "gpu"] == 200


def test_step_cap_caps_work_settings_only(monkeypatch, capsys):
    profiles = tl.ProfileSet("t", smoke=dict(gan_steps=5, classifier_epochs=2, n_pool=100, per_image=4, width=8, lr=0.1,
                                             image_scale=0.25, noisy_reps=1, p_curve=[1, 2], tv_scale=0.3, gan_batch=8, gamma_step=0.5, watch_points=10),
                             laptop=dict(gan_steps=500, classifier_epochs=40, n_pool=5000, per_image=128, width=16, lr=0.1,
                                         image_scale=1.0, noisy_reps=2, p_curve=[1, 2, 4], tv_scale=0.3, gan_batch=64, gamma_step=0.1, watch_points=30),
                             gpu=dict(gan_steps=20000, classifier_epochs=60, n_pool=10000, per_image=384, width=32, lr=0.1,
                                      image_scale=1.0, noisy_reps=4, p_curve=[1, 2, 4, 8, 32], tv_scale=0.5, gan_batch=128, gamma_step=0.1, watch_points=30))
    assert profiles.resolve("gpu").gan_steps == 20000 and profiles.resolve("gpu").gamma_step == 0.1
    monkeypatch.setenv("TUTORIAL_MAX_STEPS", "10")
    cfg = profiles.resolve("gpu")
    assert (cfg.gan_steps, cfg.classifier_epochs, cfg.n_pool, cfg.per_image) == (10, 2, 500, 10)   # epochs: smoke's 2
    assert (cfg.width, cfg.lr, cfg.tv_scale) == (32, 0.1, 0.5)     # architecture, rates and weights untouched
    assert (cfg.image_scale, cfg.noisy_reps, cfg.p_curve, cfg.gan_batch) == (0.25, 1, [1, 2], 8)   # sizes: smoke's
    assert cfg.gamma_step == 0.5                                   # grid spacing: smoke's coarser one
    assert cfg.watch_points == 10                                  # points of a training curve: smoke's
    assert "capped run of profile 'gpu'" in capsys.readouterr().out
    assert profiles.resolve("smoke").gan_steps == 5                # never raised above the profile
    monkeypatch.setenv("TUTORIAL_MAX_STEPS", "2")
    assert profiles.resolve("gpu").gan_steps == 5                  # never capped below smoke's value
    monkeypatch.setenv("TUTORIAL_MAX_STEPS", "ten")
    with pytest.raises(tl.ProfileError, match="positive integer"):
        profiles.resolve("gpu")
