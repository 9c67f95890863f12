import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from xpath import Image, check_image, check_labels, check_mpp
from xpath._types import check_boxes, check_groups, check_labels_1d, check_survival, check_table


class TestCheckImage:
    def test_uint8_rgb_passes_through_without_copy(self):
        img = np.zeros((4, 5, 3), np.uint8)
        assert check_image(img) is img

    def test_float_in_unit_range_is_scaled(self):
        out = check_image(np.full((2, 2, 3), 0.5))
        assert out.dtype == np.uint8 and (out == 128).all()

    def test_float_out_of_range_names_argument_and_range(self):
        with pytest.raises(ValueError, match=r"tile is a float image with values in \[2, 2\]"):
            check_image(np.full((2, 2, 3), 2.0), name="tile")

    def test_nan_is_refused(self):
        img = np.zeros((2, 2, 3))
        img[0, 0, 0] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            check_image(img)

    def test_rgba_is_composited_over_white(self):
        img = np.zeros((1, 2, 4), np.uint8)
        img[0, 0] = (100, 50, 0, 255)  # opaque: unchanged
        img[0, 1] = (0, 0, 0, 0)  # transparent: white
        out = check_image(img)
        assert out[0, 0].tolist() == [100, 50, 0]
        assert out[0, 1].tolist() == [255, 255, 255]

    def test_opaque_rgba_is_its_rgb(self):
        img = np.random.default_rng(0).integers(0, 256, (5, 7, 4), dtype=np.uint8)
        img[..., 3] = 255
        out = check_image(img)
        assert out.flags.c_contiguous and np.array_equal(out, img[..., :3])
        img[0, 0, 3] = 0  # one transparent pixel: composited, the rest unchanged
        out = check_image(img)
        assert out[0, 0].tolist() == [255, 255, 255] and np.array_equal(out.reshape(-1, 3)[1:],
                                                                         img[..., :3].reshape(-1, 3)[1:])

    def test_grayscale_refused_unless_allowed(self):
        gray = np.arange(6, dtype=np.uint8).reshape(2, 3)
        with pytest.raises(ValueError, match="allow_grayscale=True"):
            check_image(gray)
        out = check_image(gray, allow_grayscale=True)
        assert out.shape == (2, 3, 3) and (out[..., 2] == gray).all()

    @pytest.mark.parametrize("bad", [np.zeros((2, 2, 3), np.int64), np.zeros((2, 2, 3), np.uint16)])
    def test_other_dtypes_are_type_errors(self, bad):
        with pytest.raises(TypeError, match=f"dtype {bad.dtype}"):
            check_image(bad)

    @pytest.mark.parametrize("shape", [(0, 4, 3), (4, 0, 3)])
    def test_empty_image(self, shape):
        with pytest.raises(ValueError, match="non-empty"):
            check_image(np.zeros(shape, np.uint8))

    def test_wrong_channel_count(self):
        with pytest.raises(ValueError, match=r"shape \(2, 2, 5\)"):
            check_image(np.zeros((2, 2, 5), np.uint8))

    def test_non_array(self):
        with pytest.raises(TypeError, match="numpy array"):
            check_image([[1, 2, 3]])


class TestCheckLabels:
    def test_unsigned_labels_become_int32(self):
        out = check_labels(np.array([[0, 3], [3, 7]], np.uint16))
        assert out.dtype == np.int32 and out.tolist() == [[0, 3], [3, 7]]

    def test_bool_becomes_single_object(self):
        assert check_labels(np.array([[True, False]])).tolist() == [[1, 0]]

    def test_negative(self):
        with pytest.raises(ValueError, match="minimum -1"):
            check_labels(np.array([[0, -1]]))

    def test_float(self):
        with pytest.raises(TypeError, match="integer dtype"):
            check_labels(np.zeros((2, 2), np.float32))

    def test_shape_mismatch_names_both_shapes(self):
        with pytest.raises(ValueError, match=r"\(2, 2\).*\(3, 3\)"):
            check_labels(np.zeros((2, 2), np.int32), shape=(3, 3, 3))

    def test_not_2d(self):
        with pytest.raises(ValueError, match="2-D"):
            check_labels(np.zeros((2, 2, 2), np.int32))

    def test_too_large_ids(self):
        with pytest.raises(ValueError, match="int32"):
            check_labels(np.array([[2**40]], np.int64))


class TestCheckMpp:
    @pytest.mark.parametrize("bad", [0, -0.25, float("nan"), float("inf")])
    def test_non_positive_or_non_finite(self, bad):
        with pytest.raises(ValueError, match="mpp must be a positive finite number"):
            check_mpp(bad)

    def test_required(self):
        with pytest.raises(ValueError, match="required"):
            check_mpp(None)
        assert check_mpp(None, required=False) is None

    def test_type(self):
        with pytest.raises(TypeError):
            check_mpp("0.25")
        with pytest.raises(TypeError):
            check_mpp(True)

    def test_value(self):
        assert check_mpp(np.float32(0.5)) == 0.5


def test_boxes_are_xyxy_and_inside():
    assert check_boxes([0, 0, 4, 5], shape=(10, 10)).shape == (1, 4)
    with pytest.raises(ValueError, match="x_max > x_min"):
        check_boxes([[5, 0, 4, 5]])
    with pytest.raises(ValueError, match="inside the image"):
        check_boxes([[0, 0, 11, 5]], shape=(10, 10))


def test_image_record_validates():
    img = Image(np.zeros((3, 4, 3), np.uint8), mpp=0.25)
    assert img.shape == (3, 4, 3) and np.asarray(img).shape == (3, 4, 3)
    with pytest.raises(ValueError, match="mpp"):
        Image(np.zeros((3, 4, 3), np.uint8), mpp=-1)


class TestTableValidators:
    def test_array_gets_named_columns_and_series_is_described(self):
        assert list(check_table(np.ones((2, 2))).columns) == ["x0", "x1"]
        with pytest.raises(TypeError, match=r"features must be a pandas DataFrame .* got Series of shape \(3,\)"):
            check_table(pd.Series([1.0, 2.0, 3.0]), name="features")

    def test_survival_names_the_bad_argument(self):
        t, e = check_survival([1.0, 2.0, 3.0], [True, False, True])
        assert t.dtype == np.float64 and e.tolist() == [1, 0, 1]
        with pytest.raises(ValueError, match="durations must be >= 0"):
            check_survival([1.0, -2.0], [1, 0])
        with pytest.raises(ValueError, match="events has 1 entries but durations has 2"):
            check_survival([1.0, 2.0], [1])

    def test_labels_and_groups(self):
        with pytest.raises(ValueError, match="at least two classes"):
            check_labels_1d([1, 1, 1])
        assert check_groups(None, n=3) is None
        with pytest.raises(ValueError, match="fewer than cv=3 folds"):
            check_groups(["a", "b", "a", "b"], n=4, n_splits=3)

    def test_the_validators_have_one_home(self):
        # they moved to xpath._types; models keeps only its own (no second copy, no re-export)
        from xpath.models import _checks

        for name in ("check_table", "check_survival", "check_labels_1d", "check_groups"):
            assert not hasattr(_checks, name), name

    def test_import_xpath_does_not_import_pandas(self):
        code = "import sys, xpath; print('pandas' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "False"
