import pytest
import torch

import tutorial_lib as tl
from tutorial_lib import data


def test_digits_shapes_split_and_describe():
    d = data.load_digits()
    assert d.x_train.shape[1:] == (1, 8, 8) and len(d.x_train) + len(d.x_test) == 1797
    assert d.x_train.min() >= 0 and d.x_train.max() <= 1
    assert 0.2 < len(d.x_test) / 1797 < 0.3
    assert "1347 / 450" in d.describe()


def test_digits_split_is_deterministic_and_disjoint():
    a, b = data.load_digits(), data.load_digits()
    assert torch.equal(a.x_test, b.x_test)
    other = data.load_digits(split_seed=1)
    assert not torch.equal(a.y_test, other.y_test)
    train = {tuple(x.flatten().tolist()) for x in a.x_train}
    overlap = sum(tuple(x.flatten().tolist()) in train for x in a.x_test)
    assert overlap < 10  # only genuinely identical scans may coincide


def test_digits_filtering_and_upsampling():
    d = data.load_digits(size=16, exclude=[8])
    assert d.x_train.shape[-1] == 16 and 8 not in d.y_train.tolist() and 8 not in d.classes
    only = data.load_digits(classes=[1, 7])
    assert set(only.y_train.tolist()) == {1, 7}
    with pytest.raises(tl.TutorialError, match="0-9"):
        data.load_digits(classes=[12])
    with pytest.raises(tl.TutorialError, match="No digit class"):
        data.load_digits(classes=[3], exclude=[3])
    with pytest.raises(tl.TutorialError, match="size"):
        data.load_digits(size=4)


def test_photo_splits_are_by_source_image():
    train, test = set(data.PHOTO_SPLITS["train"]), set(data.PHOTO_SPLITS["test"])
    assert not train & test
    assert set(data.PHOTO_SPLITS["train_a"]) | set(data.PHOTO_SPLITS["train_b"]) == train
    assert not set(data.PHOTO_SPLITS["train_a"]) & set(data.PHOTO_SPLITS["train_b"])
    p = data.photo_patches("test", patch_size=16, per_image=3, seed=0)
    assert set(p.sources) == test and p.patches.shape == (3 * len(test), 3, 16, 16)
    assert "coffee (scikit-image)" in p.describe()


def test_photo_patches_are_seeded_and_options_work():
    a = data.photo_patches("train_b", patch_size=24, per_image=2, seed=5)
    b = data.photo_patches("train_b", patch_size=24, per_image=2, seed=5)
    assert torch.equal(a.patches, b.patches)
    g = data.photo_patches(["coffee"], patch_size=24, per_image=2, seed=5, gray=True, scale=0.5, min_std=0.05)
    assert g.patches.shape == (2, 1, 24, 24)
    with pytest.raises(tl.TutorialError, match="Unknown photo"):
        data.load_photos(["lena"])
    with pytest.raises(tl.TutorialError, match="smaller than the patch"):
        data.photo_patches("test", patch_size=2000)


def test_check_images_messages():
    with pytest.raises(tl.InputShapeError, match=r"\(N, C, H, W\)"):
        data.check_images(torch.rand(3, 8, 8))
    with pytest.raises(tl.InputShapeError, match="3 channel"):
        data.check_images(torch.rand(1, 1, 8, 8), channels=3)
    with pytest.raises(tl.InputShapeError, match="floating-point"):
        data.check_images(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(tl.InputShapeError, match="torch.Tensor"):
        data.check_images([[1.0]])
    assert data.rgb_to_gray(torch.ones(2, 3, 4, 4)).shape == (2, 1, 4, 4)


def test_digits_validation_split_comes_from_train_and_leaves_test_alone():
    plain, with_val = data.load_digits(), data.load_digits(val_fraction=0.2)
    assert torch.equal(plain.x_test, with_val.x_test)                  # the test split never moves
    assert len(with_val.y_train) + len(with_val.y_val) == len(plain.y_train)
    assert 0.15 < len(with_val.y_val) / len(plain.y_train) < 0.25
    assert set(with_val.y_val.tolist()) == set(range(10))              # stratified
    train_rows = {tuple(x.flatten().tolist()) for x in with_val.x_train}
    assert sum(tuple(x.flatten().tolist()) in train_rows for x in with_val.x_val) < 5   # (a few duplicate images exist)
    assert "train / val / test" in with_val.describe() and len(plain.y_val) == 0
    with pytest.raises(tl.TutorialError, match="val_fraction"):
        data.load_digits(val_fraction=1.0)


def test_photo_splits_are_disjoint_and_validation_has_several_photos():
    train, val, test = (set(data.PHOTO_SPLITS[k]) for k in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)
    assert len(val) >= 4 and len(test) >= 5 and set(data.PHOTO_SPLITS["val_colour"]) <= val
    photos = data.load_photos("val")
    assert all(p.shape[0] == 3 and 0 <= float(p.min()) and float(p.max()) <= 1 for p in photos.values())
    grey = photos["camera"]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])


def test_square_views_stack_and_keep_the_scene():
    views = data.load_photos("test", side=64)
    assert all(v.shape == (3, 64, 64) for v in views.values())
    full = data.load_photos(["coffee"])["coffee"]            # 400 x 600: shrunk to 64 x 96, centre cropped
    small = torch.nn.functional.interpolate(full[None], size=(64, 96), mode="bilinear", antialias=True,
                                            align_corners=False)[0].clamp(0, 1)
    assert torch.allclose(views["coffee"], small[:, :, 16:80])
    assert torch.equal(data.load_photos(["moon"], side=512)["moon"], data.load_photos(["moon"])["moon"])
    for side in (96, 288):  # the views notebooks 04 and 05 use (smoke; laptop and gpu)
        for split in ("val", "test"):
            assert {tuple(v.shape) for v in data.load_photos(split, side=side).values()} == {(3, side, side)}
    with pytest.raises(tl.TutorialError, match="smaller than the requested side"):
        data.load_photos(["coins"], side=320)
    with pytest.raises(tl.TutorialError, match="side must be"):
        data.load_photos("test", side=0)


def test_crop_box_draws_top_then_left_inside_the_image():
    gen = torch.Generator().manual_seed(3)
    boxes = [data.crop_box(10, 7, (4, 2), gen) for _ in range(200)]
    assert all(0 <= t <= 6 and 0 <= l <= 5 for t, l in boxes)
    assert {t for t, _ in boxes} == set(range(7)) and {l for _, l in boxes} == set(range(6))
    gen, ref = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    top, left = data.crop_box(9, 9, 3, gen)
    assert (top, left) == (int(torch.randint(0, 7, (1,), generator=ref)), int(torch.randint(0, 7, (1,), generator=ref)))
    with pytest.raises(tl.InputShapeError, match="does not fit"):
        data.crop_box(4, 8, 5, gen)


def test_random_crops_are_the_crop_box_draws_of_their_seed():
    images = [torch.rand(2, 9, 11), torch.rand(2, 12, 8)]
    crops = data.random_crops(images, 5, 2, seed=7)
    gen = torch.Generator().manual_seed(7)
    expected = []
    for im in images:
        for _ in range(2):
            top, left = data.crop_box(im.shape[1], im.shape[2], 5, gen)
            expected.append(im[:, top:top + 5, left:left + 5])
    assert torch.equal(crops, torch.stack(expected))


def test_the_isp_splits_hold_colour_validation_photos_out_of_training():
    isp_train, isp_val = set(data.PHOTO_SPLITS["isp_train"]), set(data.PHOTO_SPLITS["isp_val"])
    assert not isp_train & isp_val and not (isp_train | isp_val) & set(data.PHOTO_SPLITS["test"])
    assert isp_train < set(data.PHOTO_SPLITS["train"])
    for name, photo in data.load_photos("isp_val").items():  # colour photographs, not grey ones
        assert not torch.equal(photo[0], photo[1]), name
