import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from xpath.datasets import sample_slide, sample_slide_path
from xpath.io import open_slide, read_image, read_region


@pytest.fixture
def rgb(rng):
    return rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)


def test_png_round_trip(tmp_path, rgb):
    path = tmp_path / "a.png"
    PILImage.fromarray(rgb).save(path)
    img = read_image(path, mpp=0.5)
    assert np.array_equal(img.array, rgb) and img.mpp == 0.5 and img.origin == (0, 0)


def test_rgba_png_is_composited(tmp_path, rgb):
    rgba = np.dstack([rgb, np.zeros(rgb.shape[:2], np.uint8)])
    path = tmp_path / "a.png"
    PILImage.fromarray(rgba).save(path)
    assert (read_image(path).array == 255).all()


def test_jpeg_is_read(tmp_path, rgb):
    path = tmp_path / "a.jpg"
    PILImage.fromarray(rgb).save(path, quality=95)
    img = read_image(path)
    assert img.array.shape == rgb.shape and img.mpp is None


def test_tiff_records_mpp(tmp_path, rgb):
    path = tmp_path / "a.tif"
    # 40,000 pixels per cm = 0.25 µm per pixel
    tifffile.imwrite(path, rgb, resolution=(40000, 40000), resolutionunit="CENTIMETER")
    img = read_image(path)
    assert np.array_equal(img.array, rgb)
    assert img.mpp == pytest.approx(0.25)
    assert read_image(path, mpp=0.5).mpp == 0.5  # the caller's value wins


def test_grayscale_file_needs_opt_in(tmp_path):
    path = tmp_path / "g.png"
    PILImage.fromarray(np.zeros((4, 4), np.uint8)).save(path)
    with pytest.raises(ValueError, match="grayscale"):
        read_image(path)
    assert read_image(path, allow_grayscale=True).array.shape == (4, 4, 3)


def test_missing_file_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_image(tmp_path / "nope.png")


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".svs"])
def test_corrupt_file_names_path(tmp_path, suffix):
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(b"this is not an image" * 10)
    with pytest.raises(ValueError, match=f"broken{suffix}"):
        read_image(path)


def test_bad_mpp(tmp_path, rgb):
    path = tmp_path / "a.png"
    PILImage.fromarray(rgb).save(path)
    with pytest.raises(ValueError, match="mpp"):
        read_image(path, mpp=0)


class TestSlide:
    def test_sample_slide_metadata(self):
        with sample_slide() as slide:
            assert slide.dimensions == (2220, 2967)
            assert slide.mpp == pytest.approx(0.499, abs=1e-3)

    def test_region_equals_crop_of_full_level(self):
        path = sample_slide_path()
        region = read_region(path, (100, 200), (64, 48))
        with open_slide(path) as slide:
            full = slide.read_region((0, 0), slide.dimensions).array
        assert region.array.shape == (48, 64, 3)
        assert np.array_equal(region.array, full[200:248, 100:164])
        assert region.origin == (100, 200) and region.mpp == pytest.approx(0.499, abs=1e-3)

    def test_read_at_mpp_resamples(self):
        region = read_region(sample_slide_path(), (0, 0), (100, 80), mpp=1.0)
        assert region.array.shape == (80, 100, 3) and region.mpp == 1.0

    def test_read_image_of_slide_gives_overview(self):
        img = read_image(sample_slide_path())
        assert img.array.shape[:2] == (2967, 2220)

    def test_bad_level_and_size(self):
        with sample_slide() as slide:
            with pytest.raises(ValueError, match="level must be in"):
                slide.read_region((0, 0), (10, 10), level=9)
            with pytest.raises(ValueError, match="size must be positive"):
                slide.read_region((0, 0), (0, 10))

    def test_thumbnail(self):
        with sample_slide() as slide:
            thumb = slide.thumbnail(256)
        assert max(thumb.array.shape[:2]) == 256
