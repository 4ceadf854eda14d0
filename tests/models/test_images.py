import io

import numpy as np
import pytest
from PIL import Image

from models.images import encode_png, image_grid, to_uint8_nhwc, to_unit_nchw


def test_to_uint8_nhwc_maps_range_and_layout():
    x = np.zeros((2, 3, 4, 5), np.float32)
    x[0, 0, 0, 0], x[0, 1, 0, 0], x[0, 2, 0, 0] = -1.0, 1.0, 7.0
    x[1, 0, 3, 4] = -3.0
    img = to_uint8_nhwc(x)
    assert img.dtype == np.uint8 and img.shape == (2, 4, 5, 3)
    assert img[0, 0, 0].tolist() == [0, 255, 255]  # 7 is clipped
    assert img[1, 3, 4, 0] == 0  # -3 is clipped
    assert img[1, 0, 0, 0] == 128  # 0 is mid-grey


def test_to_unit_nchw_inverts_to_uint8_nhwc():
    img = np.arange(256, dtype=np.uint8).reshape(1, 8, 16, 2).repeat(3, axis=0)
    x = to_unit_nchw(img)
    assert x.dtype == np.float32 and x.shape == (3, 2, 8, 16)
    assert x.min() == -1.0 and x.max() == 1.0
    np.testing.assert_array_equal(to_uint8_nhwc(x), img)


def test_to_unit_nchw_rejects_float_or_unbatched_images():
    with pytest.raises(ValueError, match="uint8"):
        to_unit_nchw(np.zeros((1, 4, 4, 1), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        to_unit_nchw(np.zeros((4, 4, 1), np.uint8))


@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB")])
def test_png_round_trip(channels, mode):
    img = np.random.default_rng(0).integers(0, 256, (9, 13, channels), dtype=np.uint8)
    data = encode_png(img)
    decoded = Image.open(io.BytesIO(data))
    assert decoded.format == "PNG" and decoded.mode == mode
    pixels = np.asarray(decoded).reshape(9, 13, channels)
    np.testing.assert_array_equal(pixels, img)
    assert encode_png(img.copy()) == data, "equal pixels give equal bytes"


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4), np.uint8)],
)
def test_encode_png_rejects_other_arrays(bad):
    with pytest.raises(ValueError, match="uint8"):
        encode_png(bad)


def test_image_grid_places_images_row_major():
    n, h, w, c, ncols, pad = 5, 4, 6, 3, 3, 2
    images = np.stack([np.full((h, w, c), 10 * (i + 1), np.uint8) for i in range(n)])
    grid = image_grid(images, ncols, pad=pad)
    assert grid.dtype == np.uint8
    assert grid.shape == (2 * (h + pad) + pad, ncols * (w + pad) + pad, c)
    for i in range(n):
        top, left = pad + (i // ncols) * (h + pad), pad + (i % ncols) * (w + pad)
        assert (grid[top : top + h, left : left + w] == 10 * (i + 1)).all()
    assert grid[:pad].max() == 0 and grid[:, :pad].max() == 0, "padding is black"
    last = grid[pad + h + pad :, pad + 2 * (w + pad) :]
    assert last.max() == 0, "the cell after the last image is empty"
