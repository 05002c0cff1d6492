"""Robust image input: arrays, PIL modes, files, EXIF, guards, and path expansion."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from repvit_plugins.io import ImageLoadError, iter_image_paths, load_image

RED, WHITE = [255, 0, 0], [255, 255, 255]


def _rgb(h=6, w=5, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (h, w, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------- arrays


def test_rgb_and_bgr_arrays():
    image = _rgb()
    out = load_image(image)
    assert out.dtype == np.uint8 and out.shape == (6, 5, 3)
    np.testing.assert_array_equal(out, image)
    bgr = load_image(image, bgr=True)
    np.testing.assert_array_equal(bgr, image[..., ::-1])
    assert bgr.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("shape", [(4, 3), (4, 3, 1)])
def test_grayscale_arrays_become_three_equal_channels(shape):
    gray = np.arange(12, dtype=np.uint8).reshape(shape) * 20
    out = load_image(gray)
    assert out.shape == (4, 3, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray.reshape(4, 3))


def test_alpha_is_composited_on_white():
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[0, :, :3] = [200, 100, 0]
    rgba[0, :, 3] = [0, 255, 128]
    out = load_image(rgba)
    np.testing.assert_array_equal(out[0, 0], WHITE)
    np.testing.assert_array_equal(out[0, 1], [200, 100, 0])
    expected = np.round(np.array([200, 100, 0]) * 128 / 255 + 255 * 127 / 255).astype(np.uint8)
    np.testing.assert_array_equal(out[0, 2], expected)
    # BGRA with bgr=True: colour channels flipped, alpha kept last
    np.testing.assert_array_equal(load_image(rgba[..., [2, 1, 0, 3]], bgr=True), out)
    gray_alpha = np.array([[[10, 0], [10, 255]]], dtype=np.uint8)  # LA
    np.testing.assert_array_equal(load_image(gray_alpha)[0], [WHITE, [10, 10, 10]])


def test_16_bit_and_float_arrays_are_scaled():
    deep = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    np.testing.assert_array_equal(load_image(deep)[0, :, 0], [0, 1, 128, 255])
    unit = np.array([[0.0, 0.25, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(load_image(unit)[0, :, 1], [0, 64, 255])
    wide = np.array([[0.0, 10.4, 254.6]], dtype=np.float64)
    np.testing.assert_array_equal(load_image(wide)[0, :, 2], [0, 10, 255])
    np.testing.assert_array_equal(load_image(np.array([[True, False]]))[0, :, 0], [255, 0])
    np.testing.assert_array_equal(load_image(np.array([[3, 250]], dtype=np.int64))[0, :, 0], [3, 250])


@pytest.mark.parametrize("array, message", [
    (np.full((2, 2, 3), 2.5e3, dtype=np.float32), r"expected \[0, 1\]"),
    (np.array([[np.nan, 0.1]]), "NaN"),
    (np.zeros((3, 20, 30), dtype=np.uint8), "channels-first"),
    (np.zeros((4, 4, 5), dtype=np.uint8), "HxWx3"),
    (np.zeros((0, 4, 3), dtype=np.uint8), "empty"),
    (np.full((2, 2), -5, dtype=np.int32), "fit neither"),
])
def test_unusable_arrays_raise(array, message):
    with pytest.raises(ImageLoadError, match=message):
        load_image(array)


def test_unknown_source_type_raises():
    with pytest.raises(ImageLoadError, match="file path, a PIL image"):
        load_image(12345)


# ----------------------------------------------------------------------------- PIL modes


def test_pil_modes_are_converted():
    gray = Image.fromarray(np.full((3, 4), 77, dtype=np.uint8))
    np.testing.assert_array_equal(load_image(gray)[1, 2], [77, 77, 77])
    np.testing.assert_array_equal(load_image(Image.new("1", (2, 2), 1))[0, 0], WHITE)
    palette = Image.new("P", (4, 3))
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    palette.putpixel((1, 1), 1)
    out = load_image(palette)
    np.testing.assert_array_equal(out[1, 1], [10, 20, 30])
    np.testing.assert_array_equal(out[0, 0], [0, 0, 0])
    palette.info["transparency"] = 0  # index 0 transparent -> white
    np.testing.assert_array_equal(load_image(palette)[0, 0], WHITE)
    np.testing.assert_array_equal(load_image(Image.new("CMYK", (2, 2), (0, 0, 0, 0)))[0, 0], WHITE)
    np.testing.assert_array_equal(load_image(Image.new("RGBA", (2, 2), (9, 8, 7, 0)))[0, 0], WHITE)
    np.testing.assert_array_equal(load_image(Image.new("LA", (2, 2), (9, 255)))[0, 0], [9, 9, 9])
    deep = Image.fromarray(np.array([[65535, 257]], dtype=np.uint16))
    assert deep.mode.startswith("I;16")
    np.testing.assert_array_equal(load_image(deep)[0, :, 0], [255, 1])
    np.testing.assert_array_equal(load_image(deep.convert("I"))[0, :, 0], [255, 1])
    np.testing.assert_array_equal(load_image(Image.fromarray(np.array([[0.5]], dtype=np.float32)))[0, 0], [128] * 3)
    np.testing.assert_array_equal(load_image(Image.new("YCbCr", (2, 2), (255, 128, 128)))[0, 0], WHITE)


# ----------------------------------------------------------------------------- files


def test_png_round_trip_and_path_types(tmp_path):
    image = _rgb(7, 9)
    path = tmp_path / "x.png"
    Image.fromarray(image).save(path)
    np.testing.assert_array_equal(load_image(path), image)
    np.testing.assert_array_equal(load_image(str(path)), image)


def test_exif_orientation_is_honoured(tmp_path):
    stored = np.zeros((2, 4, 3), dtype=np.uint8)
    stored[0, 0] = RED
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6  # stored image must be turned 90 degrees clockwise for display
    path = tmp_path / "rotated.png"
    image.save(path, exif=exif.tobytes())
    out = load_image(path)
    assert out.shape == (4, 2, 3)
    np.testing.assert_array_equal(out[0, -1], RED)


def test_16_bit_and_palette_files(tmp_path):
    deep = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 32896], [65535, 257]], dtype=np.uint16)).save(deep)
    np.testing.assert_array_equal(load_image(deep)[..., 0], [[0, 128], [255, 1]])
    gif = tmp_path / "p.gif"
    Image.fromarray(_rgb(4, 4)).convert("P").save(gif)
    assert load_image(gif).shape == (4, 4, 3)


def test_not_an_image_truncated_missing_and_folder(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("hello, not pixels")
    with pytest.raises(ImageLoadError, match=r"notes\.jpg: not an image file"):
        load_image(text)
    good = tmp_path / "cut.png"
    Image.fromarray(_rgb(64, 64)).save(good)
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match=r"cut\.png: the image is truncated or corrupt"):
        load_image(good)
    with pytest.raises(ImageLoadError, match=r"missing\.png: no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageLoadError, match="is a folder"):
        load_image(tmp_path)


@pytest.mark.parametrize("url", ["http://example.com/a.jpg", "https://x/y.png", "s3://bucket/k.png"])
def test_urls_are_refused_without_network(url):
    with pytest.raises(ImageLoadError, match="never uses the network"):
        load_image(url)
    with pytest.raises(ImageLoadError, match="never uses the network"):
        iter_image_paths([url])


def test_decompression_bomb_guard(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.fromarray(_rgb(100, 100)).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither PIL's warning nor anything else may leak
        with pytest.raises(ImageLoadError, match=r"big\.png: 100x100 = 10,000 pixels exceeds the limit of 5,000"):
            load_image(path, max_pixels=5000)
        assert load_image(path, max_pixels=10_000).shape == (100, 100, 3)
        # past PIL's own hard limit (2 x MAX_IMAGE_PIXELS): our limit decides, PIL's global is restored
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
        assert load_image(path, max_pixels=None).shape == (100, 100, 3)
        assert load_image(path, max_pixels=20_000).shape == (100, 100, 3)
        assert Image.MAX_IMAGE_PIXELS == 1000
        with pytest.raises(ImageLoadError, match="exceeds the limit of 1,500 pixels"):
            load_image(path, max_pixels=1500)  # PIL's own error, reworded


# ----------------------------------------------------------------------------- iter_image_paths


@pytest.fixture()
def tree(tmp_path):
    for name in ["a/1.jpg", "a/2.PNG", "a/sub/3.png", "a/.hidden/4.png", "a/notes.txt", "b.weird"]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return tmp_path


def _names(paths, root):
    return [p.resolve().relative_to(root.resolve()).as_posix() for p in paths]


def test_iter_image_paths_folders_globs_and_files(tree):
    assert _names(iter_image_paths([str(tree / "a")]), tree) == ["a/1.jpg", "a/2.PNG", "a/sub/3.png"]
    assert _names(iter_image_paths([tree / "a"], recursive=False), tree) == ["a/1.jpg", "a/2.PNG"]
    assert _names(iter_image_paths([str(tree / "a" / "*.jpg")]), tree) == ["a/1.jpg"]
    assert _names(iter_image_paths([str(tree / "a" / "*")]), tree) == ["a/1.jpg", "a/2.PNG", "a/sub/3.png"]
    # explicitly named files are kept whatever their extension; duplicates collapse; sorted
    found = iter_image_paths([str(tree / "b.weird"), str(tree / "a"), str(tree / "a" / "1.jpg"),
                              str(tree / "a/notes.txt")])
    assert _names(found, tree) == ["a/1.jpg", "a/2.PNG", "a/notes.txt", "a/sub/3.png", "b.weird"]
    assert _names(iter_image_paths(str(tree / "b.weird")), tree) == ["b.weird"]


def test_iter_image_paths_errors(tree):
    with pytest.raises(ImageLoadError, match=r"nope: no such file or folder"):
        iter_image_paths([str(tree / "nope")])
    with pytest.raises(ImageLoadError, match="matches no file"):
        iter_image_paths([str(tree / "*.tiff")])
