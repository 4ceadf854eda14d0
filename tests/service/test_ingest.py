"""service.ingest: accepted layouts, normalisation, and every refusal (with its HTTP status)."""

import io
import struct
import tarfile
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from service.errors import INGEST_STATUS
from service.ingest import ErrorKind, IngestError, IngestLimits, ingest
from training.dataset import DatasetInfo, StoredDataset

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
SHAPES = {"circle": RED, "square": GREEN, "triangle": BLUE}  # class name -> fill colour


def image_bytes(size=(16, 16), mode="RGB", fill=RED, fmt="PNG") -> bytes:
    """A centred filled shape on black, encoded as fmt."""
    image = Image.new(mode, size)
    width, height = size
    box = (width // 4, height // 4, 3 * width // 4 - 1, 3 * height // 4 - 1)
    ImageDraw.Draw(image).rectangle(box, fill=fill if mode != "L" else 255)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def class_members(prefix="", per_class=3, **image_kwargs) -> dict[str, bytes]:
    return {
        f"{prefix}{name}/{i}.png": image_bytes(fill=fill, **image_kwargs)
        for name, fill in SHAPES.items()
        for i in range(per_class)
    }


def two_classes_of(image: Image.Image) -> dict[str, bytes]:
    """Members a/0.png, a/1.png, b/0.png, b/1.png: `image` as PNG, four times."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return {f"{name}/{i}.png": buffer.getvalue() for name in ("a", "b") for i in range(2)}


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def write_tar(path: Path, members: dict[str, bytes], mode="w") -> Path:
    with tarfile.open(path, mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def write_npz(path: Path, **arrays) -> Path:
    with path.open("wb") as stream:
        np.savez(stream, **arrays)
    return path


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "datasets" / "ds-1"


def stored(dest: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    dataset = StoredDataset.load(dest)
    return np.array(dataset.x), dataset.y, dataset.info.to_json()


def ingest_file(src: Path, filename: str, dest: Path, **kwargs) -> DatasetInfo:
    """Ingest src as the gateway does: from an open binary file, read in place."""
    with src.open("rb") as upload:
        return ingest(upload, filename, dest, **kwargs)


def refused(src: Path, dest: Path, code: str, status: int, *words: str, **kwargs) -> IngestError:
    """Ingest must fail with code (and the status the gateway gives it), name what to fix,
    and leave nothing behind."""
    with pytest.raises(IngestError) as caught:
        ingest_file(src, src.name, dest, **kwargs)
    error = caught.value
    assert (error.kind, INGEST_STATUS[error.kind]) == (code, status), error.message
    for word in words:
        assert word in error.message
    assert not dest.exists()
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []
    return error


def test_every_error_kind_has_a_status():
    assert set(INGEST_STATUS) == set(ErrorKind)
    assert set(INGEST_STATUS.values()) == {413, 415, 422}


# --- accepted uploads ----------------------------------------------------------------------


def test_zip_of_class_folders_is_stored_sorted_with_decoded_pixels(tmp_path, dest):
    src = write_zip(tmp_path / "shapes.zip", class_members())

    info = ingest_file(src, "shapes.zip", dest)

    x, y, metadata = stored(dest)
    assert info.classes == ["circle", "square", "triangle"]
    assert (info.num_images, info.counts, info.source_format) == (9, [3, 3, 3], "zip")
    assert (x.shape, x.dtype, y.dtype) == ((9, 16, 16, 3), np.uint8, np.int64)
    assert y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for row, fill in zip((0, 3, 6), SHAPES.values(), strict=True):
        assert tuple(x[row, 8, 8]) == fill and tuple(x[row, 0, 0]) == (0, 0, 0)
    assert metadata == {
        "classes": ["circle", "square", "triangle"],
        "counts": [3, 3, 3],
        "image": {"height": 16, "width": 16, "channels": 3},
        "num_images": 9,
        "source_format": "zip",
        "labelled": True,
    }
    assert [p.name for p in dest.parent.iterdir()] == ["ds-1"]


@pytest.mark.parametrize(
    ("mode", "filename"), [("w", "shapes.tar"), ("w:gz", "shapes.tar.gz"), ("w:gz", "upload.bin")]
)
def test_tar_and_tar_gz_detected_from_content(tmp_path, dest, mode, filename):
    src = write_tar(tmp_path / filename, class_members(), mode)

    info = ingest_file(src, filename, dest)

    assert (info.source_format, info.num_images, info.channels) == ("tar", 9, 3)
    assert stored(dest)[0].shape == (9, 16, 16, 3)


def test_single_top_folder_is_unwrapped_and_os_junk_ignored(tmp_path, dest):
    members = class_members(prefix="mydata/")
    members["mydata/circle/extra.JPG"] = image_bytes(fill=RED, fmt="JPEG")
    members["__MACOSX/mydata/circle/._0.png"] = b"resource fork"
    members["mydata/.DS_Store"] = b"finder"
    members["mydata/square/Thumbs.db"] = b"thumbs"
    src = write_zip(tmp_path / "mydata.zip", members)

    info = ingest_file(src, "mydata.zip", dest)

    assert info.classes == ["circle", "square", "triangle"]
    assert info.counts == [4, 3, 3]


@pytest.mark.parametrize("fmt", ["JPEG", "BMP", "WEBP"])
def test_other_image_formats_decode(tmp_path, dest, fmt):
    members = {f"{name}/0.{fmt.lower()}": image_bytes(fmt=fmt) for name in ("a", "b")}
    src = write_zip(tmp_path / "formats.zip", members)

    ingest_file(src, "formats.zip", dest)

    red = stored(dest)[0][:, 8, 8].astype(int)
    assert np.all(red[:, 0] > 200) and np.all(red[:, 1:] < 60)


def test_jpeg_exif_orientation_is_applied(tmp_path, dest):
    image = Image.new("RGB", (16, 16))
    ImageDraw.Draw(image).rectangle((0, 0, 7, 15), fill=RED)  # left half red as stored
    exif = Image.Exif()
    exif[0x0112] = 3  # orientation: rotate 180 degrees to display
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif, quality=95)
    members = {f"{name}/0.jpg": buffer.getvalue() for name in ("a", "b")}
    src = write_zip(tmp_path / "photo.zip", members)

    ingest_file(src, "photo.zip", dest)

    x = stored(dest)[0].astype(int)
    assert x[0, 8, 12, 0] > 200 and x[0, 8, 3, 0] < 60  # displayed: right half red


def test_grayscale_images_are_stored_with_one_channel(tmp_path, dest):
    src = write_zip(tmp_path / "gray.zip", class_members(mode="L"))

    info = ingest_file(src, "gray.zip", dest)

    x = stored(dest)[0]
    assert (info.channels, x.shape) == (1, (9, 16, 16, 1))
    assert x[0, 8, 8, 0] == 255 and x[0, 0, 0, 0] == 0


def test_one_colour_image_makes_the_dataset_rgb(tmp_path, dest):
    members = class_members(mode="L")
    members["circle/colour.png"] = image_bytes(fill=RED)
    src = write_zip(tmp_path / "mixed.zip", members)

    assert ingest_file(src, "mixed.zip", dest).channels == 3
    assert stored(dest)[0].shape == (10, 16, 16, 3)


@pytest.mark.parametrize(("mode", "channels"), [("L", 3), ("RGB", 1)])
def test_channels_option_overrides_the_images(tmp_path, dest, mode, channels):
    src = write_zip(tmp_path / "shapes.zip", class_members(mode=mode))

    ingest_file(src, "shapes.zip", dest, channels=channels)

    x = stored(dest)[0]
    assert x.shape == (9, 16, 16, channels)
    assert x[0, 8, 8].min() > 0 and x[0, 0, 0].max() == 0


def test_non_square_large_images_are_centre_cropped_to_default_size(tmp_path, dest):
    image = Image.new("L", (300, 150))  # longest side 300 > max_size: default_size 64
    ImageDraw.Draw(image).rectangle((75, 0, 224, 149), fill=255)  # the central square
    members = two_classes_of(image)
    src = write_zip(tmp_path / "wide.zip", members)

    info = ingest_file(src, "wide.zip", dest)

    x = stored(dest)[0]
    assert (info.height, info.width, x.shape) == (64, 64, (4, 64, 64, 1))
    assert x[:, :, 1:-1].min() >= 250  # only the white central square survives the crop
    assert x.min() >= 200  # the outer columns only see a little of the black band (Lanczos)


def test_most_common_size_is_kept_and_others_resized(tmp_path, dest):
    members = class_members(size=(24, 24))
    members["circle/small.png"] = image_bytes(size=(16, 16))
    src = write_zip(tmp_path / "sizes.zip", members)

    info = ingest_file(src, "sizes.zip", dest)

    assert (info.height, stored(dest)[0].shape) == (24, (10, 24, 24, 3))


def test_image_size_option_resizes_everything(tmp_path, dest):
    src = write_zip(tmp_path / "shapes.zip", class_members())

    info = ingest_file(src, "shapes.zip", dest, image_size=32)

    x = stored(dest)[0]
    assert (info.height, info.width, x.shape) == (32, 32, (9, 32, 32, 3))
    assert tuple(x[0, 16, 16]) == RED


def test_transparent_pixels_are_composited_on_black(tmp_path, dest):
    image = Image.new("RGBA", (16, 16), (255, 255, 255, 0))  # white but fully transparent
    ImageDraw.Draw(image).rectangle((4, 4, 11, 11), fill=(*RED, 255))
    members = two_classes_of(image)
    src = write_zip(tmp_path / "alpha.zip", members)

    info = ingest_file(src, "alpha.zip", dest)

    x = stored(dest)[0]
    assert info.channels == 3
    assert tuple(x[0, 0, 0]) == (0, 0, 0) and tuple(x[0, 8, 8]) == RED


def test_sixteen_bit_grayscale_keeps_its_range(tmp_path, dest):
    pixels = np.full((16, 16), 65535, dtype=np.uint16)
    pixels[:, :8] = 1024
    image = Image.fromarray(pixels)
    members = two_classes_of(image)
    src = write_zip(tmp_path / "deep.zip", members)

    ingest_file(src, "deep.zip", dest)

    x = stored(dest)[0]
    assert x.shape == (4, 16, 16, 1)
    assert (x[0, 0, 0, 0], x[0, 0, 15, 0]) == (4, 255)


def test_npz_without_classes_names_classes_by_label_value(tmp_path, dest):
    x = np.arange(6 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(6, 28, 28)
    src = write_npz(tmp_path / "digits.npz", x=x, y=np.array([7, 2, 7, 10, 2, 7]))

    info = ingest_file(src, "digits.npz", dest)

    stored_x, y, metadata = stored(dest)
    assert (info.classes, info.counts) == (["2", "7", "10"], [2, 3, 1])
    assert y.tolist() == [1, 0, 1, 2, 0, 1]
    assert stored_x.shape == (6, 28, 28, 1) and np.array_equal(stored_x[..., 0], x)
    assert metadata["source_format"] == "npz"


def test_npz_classes_are_sorted_and_labels_remapped(tmp_path, dest):
    x = np.zeros((4, 16, 16, 3), dtype=np.uint8)
    x[1] = 255
    y = np.array([0, 1, 1, 0])
    src = write_npz(tmp_path / "z.npz", x=x, y=y, classes=np.array(["zebra", "ant"]))

    info = ingest_file(src, "z.npz", dest)

    stored_x, stored_y, _ = stored(dest)
    assert info.classes == ["ant", "zebra"] and info.channels == 3
    assert stored_y.tolist() == [1, 0, 0, 1]
    assert stored_x[1].min() == 255 and stored_x[0].max() == 0


@pytest.mark.parametrize(
    ("shape", "kwargs", "expected"),
    [
        ((4, 200, 200, 1), {}, (4, 64, 64, 1)),
        ((4, 20, 20, 3), {"image_size": 32, "channels": 1}, (4, 32, 32, 1)),
    ],
)
def test_npz_images_are_resized_and_converted(tmp_path, dest, shape, kwargs, expected):
    src = write_npz(tmp_path / "d.npz", x=np.full(shape, 200, np.uint8), y=np.array([0, 1] * 2))

    ingest_file(src, "d.npz", dest, **kwargs)

    x = stored(dest)[0]
    assert x.shape == expected and np.all(np.abs(x.astype(int) - 200) <= 1)


def test_existing_dest_dir_is_never_overwritten(tmp_path, dest):
    dest.mkdir(parents=True)
    (dest / "keep.txt").write_text("mine")
    src = write_zip(tmp_path / "shapes.zip", class_members())

    with pytest.raises(FileExistsError):
        ingest_file(src, "shapes.zip", dest)
    assert [p.name for p in dest.parent.iterdir()] == ["ds-1"]
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [image_bytes(), b"just some text\n" * 40, b""])
def test_not_an_archive_is_unsupported(tmp_path, dest, content):
    src = tmp_path / "upload.zip"
    src.write_bytes(content)
    refused(src, dest, "unsupported_format", 415, "upload.zip", "zip", "npz")


def test_archive_without_images_is_empty(tmp_path, dest):
    src = write_zip(tmp_path / "junk.zip", {"__MACOSX/._a.png": b"x", ".DS_Store": b"x"})
    refused(src, dest, "empty_dataset", 422, "no images", "<class>/<image>")


def assert_unlabelled(dest: Path, num_images: int) -> np.ndarray:
    x, y, info = stored(dest)
    assert y is None and not (dest / "y.npy").exists()
    assert (info["labelled"], info["classes"], info["counts"]) == (False, [], [])
    assert info["num_images"] == num_images == len(x)
    return x


@pytest.mark.parametrize("prefix", ["", "top/", "top/circle/"])
def test_images_without_class_folders_are_an_unlabelled_dataset(tmp_path, dest, prefix):
    """All images at the top, or all in one folder: no classes (a single folder is no
    class: it used to be refused as single_class)."""
    fills = [RED, GREEN, BLUE, RED]
    members = {f"{prefix}{i}.png": image_bytes(fill=fill) for i, fill in enumerate(fills)}
    src = write_zip(tmp_path / "flat.zip", members)
    info = ingest_file(src, "flat.zip", dest)
    assert not info.labelled and info.source_format == "zip"
    x = assert_unlabelled(dest, 4)
    assert [tuple(image[8, 8]) for image in x] == fills  # in path order


def test_a_tar_of_images_alone_is_unlabelled(tmp_path, dest):
    members = {f"imgs/{i}.png": image_bytes() for i in range(3)}
    ingest_file(write_tar(tmp_path / "flat.tar", members), "flat.tar", dest)
    assert_unlabelled(dest, 3)


def test_images_beside_class_folders_are_a_bad_layout(tmp_path, dest):
    members = {"loose.png": image_bytes(), "circle/1.png": image_bytes()}
    src = write_zip(tmp_path / "mixed.zip", members)
    refused(src, dest, "bad_layout", 422, "loose.png", "one folder")


def test_npz_without_labels_is_an_unlabelled_dataset(tmp_path, dest):
    x = np.arange(3 * 8 * 8, dtype=np.uint8).reshape(3, 8, 8)
    ingest_file(write_npz(tmp_path / "x.npz", x=x), "x.npz", dest)
    assert np.array_equal(assert_unlabelled(dest, 3)[..., 0], x)


def test_npz_with_class_names_but_no_labels_is_invalid(tmp_path, dest):
    x, names = np.zeros((3, 8, 8), np.uint8), np.array(["a", "b"])
    src = write_npz(tmp_path / "x.npz", x=x, classes=names)
    refused(src, dest, "npz_invalid", 422, "no labels 'y'")


def test_npz_with_one_label_is_a_single_class(tmp_path, dest):
    src = write_npz(tmp_path / "one.npz", x=np.zeros((3, 8, 8), np.uint8), y=np.full(3, 4))
    refused(src, dest, "single_class", 422, "'4'", "two or more classes", "no y")


def test_npz_without_images_is_empty(tmp_path, dest):
    x, y = np.zeros((0, 8, 8), np.uint8), np.zeros(0, np.int64)
    src = write_npz(tmp_path / "none.npz", x=x, y=y)
    refused(src, dest, "empty_dataset", 422, "empty")


@pytest.mark.parametrize(
    "content",
    [b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, image_bytes(size=(64, 64))[:-40]],
    ids=["bad-header", "truncated-pixels"],  # refused while scanning / while decoding
)
def test_undecodable_image_names_the_member(tmp_path, dest, content):
    members = class_members()
    members["square/broken.png"] = content
    src = write_zip(tmp_path / "bad.zip", members)
    refused(src, dest, "corrupt_image", 422, "square/broken.png")


def test_non_image_file_names_the_member(tmp_path, dest):
    members = class_members()
    members["circle/notes.txt"] = b"a note"
    src = write_zip(tmp_path / "bad.zip", members)
    refused(src, dest, "corrupt_image", 422, "circle/notes.txt", ".png")


@pytest.mark.parametrize(
    "name", ["../evil.png", "/etc/evil.png", "C:/evil.png", "a\\..\\..\\x.png"]
)
def test_zip_slip_paths_are_refused(tmp_path, dest, name):
    members = class_members()
    members[name] = image_bytes()
    src = write_zip(tmp_path / "slip.zip", members)
    refused(src, dest, "unsafe_path", 422, name, "relative")


def test_tar_slip_path_is_refused(tmp_path, dest):
    members = class_members()
    members["circle/../../evil.png"] = image_bytes()
    src = write_tar(tmp_path / "slip.tar", members)
    refused(src, dest, "unsafe_path", 422, "circle/../../evil.png")


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE])
def test_tar_links_and_devices_are_refused(tmp_path, dest, kind):
    src = write_tar(tmp_path / "links.tar", class_members())
    with tarfile.open(src, "a") as archive:
        info = tarfile.TarInfo("circle/link.png")
        info.type, info.linkname = kind, "/etc/passwd"
        archive.addfile(info)
    refused(src, dest, "unsafe_member", 422, "circle/link.png")


def test_zip_symlink_entry_is_refused(tmp_path, dest):
    src = write_zip(tmp_path / "link.zip", class_members())
    with zipfile.ZipFile(src, "a") as archive:
        info = zipfile.ZipInfo("circle/link.png")
        info.external_attr = (0o120777 << 16) | 0x20  # S_IFLNK
        archive.writestr(info, "/etc/passwd")
    refused(src, dest, "unsafe_member", 422, "circle/link.png", "link")


def test_encrypted_zip_entry_is_refused(tmp_path, dest):
    src = write_zip(
        tmp_path / "secret.zip", {"circle/secret.png": b"ciphertext", **class_members()}
    )
    data = bytearray(src.read_bytes())
    data[data.find(b"PK\x01\x02") + 8] |= 0x1  # the first entry's "encrypted" flag bit
    src.write_bytes(bytes(data))
    refused(src, dest, "unsupported_format", 415, "circle/secret.png", "password")


@pytest.mark.parametrize("write", [write_zip, write_tar])
def test_too_many_members(tmp_path, dest, write):
    src = write(tmp_path / "many.bin", class_members())
    refused(src, dest, "too_many_members", 413, "8", limits=IngestLimits(max_members=8))


@pytest.mark.parametrize("write", [write_zip, write_tar])
def test_uncompressed_total_over_the_limit(tmp_path, dest, write):
    members = class_members()
    limit = sum(map(len, members.values())) - 1
    src = write(tmp_path / "big.bin", members)
    limits = IngestLimits(max_uncompressed_bytes=limit)
    refused(src, dest, "archive_too_large", 413, str(limit), limits=limits)


def test_zip_header_that_understates_a_size_is_refused(tmp_path, dest):
    src = write_zip(tmp_path / "lie.zip", class_members())
    data = bytearray(src.read_bytes())
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 10)  # uncompressed size of the first entry
    src.write_bytes(bytes(data))
    refused(src, dest, "corrupt_archive", 422, "lie.zip")


def test_zip_bomb_member_is_refused_before_reading(tmp_path, dest):
    members = class_members()
    members["circle/zeros.png"] = bytes(2 * 1024**2)  # deflates about 1000x
    src = write_zip(tmp_path / "bomb.zip", members)
    refused(src, dest, "compression_ratio", 413, "circle/zeros.png", "200")


def test_tar_gz_bomb_is_refused_by_overall_ratio(tmp_path, dest):
    members = class_members()
    members["circle/zeros.png"] = bytes(4 * 1024**2)
    src = write_tar(tmp_path / "bomb.tar.gz", members, "w:gz")
    refused(src, dest, "compression_ratio", 413, "200")


def test_image_over_the_pixel_cap(tmp_path, dest):
    src = write_zip(tmp_path / "shapes.zip", class_members())
    limits = IngestLimits(max_image_pixels=255)
    refused(src, dest, "image_too_large", 413, "circle/0.png", "16x16", limits=limits)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a size but holds no pixels: all a decompression bomb needs."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_pillow_bomb_warning_is_an_error_without_leaking_global_state(tmp_path, dest):
    members = class_members()
    members["circle/bomb.png"] = png_header_only(10_000, 9_000)  # just over Pillow's cap
    src = write_zip(tmp_path / "bomb.zip", members)
    pixel_cap, filters = Image.MAX_IMAGE_PIXELS, list(warnings.filters)

    limits = IngestLimits(max_image_pixels=10**9)  # leave the refusal to Pillow's own check
    refused(src, dest, "image_too_large", 413, "circle/bomb.png", limits=limits)
    assert Image.MAX_IMAGE_PIXELS == pixel_cap and warnings.filters == filters


def test_npz_object_array_needs_pickle(tmp_path, dest):
    x, y = np.zeros((4, 8, 8), np.uint8), np.array([0, 1, 0, 1])
    src = write_npz(tmp_path / "p.npz", x=x, y=y, classes=np.array(["a", "b"], dtype=object))
    refused(src, dest, "npz_pickle", 422, "classes", "pickle")


@pytest.mark.parametrize(
    ("arrays", "words"),
    [
        ({"x": np.zeros((4, 8, 8), np.float32)}, ("float32", "uint8")),
        ({"x": np.zeros((4, 64), np.uint8)}, ("(4, 64)", "(N, H, W)")),
        ({"x": np.zeros((4, 8, 8, 4), np.uint8)}, ("(4, 8, 8, 4)", "1 (gray) or 3 (RGB)")),
        ({"y": np.zeros((4, 2), np.int64)}, ("(4, 2)", "integers")),
        ({"y": np.array([0.0, 1.0, 0.0, 1.0])}, ("float64", "integers")),
        ({"classes": np.array(["a"])}, ("classes has 1 names", "0 to 0")),
        ({"classes": np.array(["a", "b", "c"])}, ("['c']", "no images")),
    ],
)
def test_npz_with_invalid_arrays(tmp_path, dest, arrays, words):
    valid = {"x": np.zeros((4, 8, 8), np.uint8), "y": np.array([0, 1, 0, 1])}
    src = write_npz(tmp_path / "bad.npz", **{**valid, **arrays})
    refused(src, dest, "npz_invalid", 422, *words)


def test_npz_without_images_is_invalid(tmp_path, dest):
    src = write_npz(tmp_path / "bad.npz", y=np.zeros(4, np.int64))
    refused(src, dest, "npz_invalid", 422, "'x'", "np.savez")


def test_npz_length_mismatch(tmp_path, dest):
    src = write_npz(tmp_path / "bad.npz", x=np.zeros((4, 8, 8), np.uint8), y=np.array([0, 1]))
    refused(src, dest, "npz_length_mismatch", 422, "4 images", "2 labels")


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("stray.png", ("'stray.png' is not inside a class folder",)),
        ("circle/deep/er.png", ("'circle/deep/er.png' is nested too deeply",)),
    ],
)
def test_files_outside_class_folders_are_a_bad_layout(tmp_path, dest, name, words):
    members = class_members()
    members[name] = image_bytes()
    src = write_zip(tmp_path / "layout.zip", members)
    refused(src, dest, "bad_layout", 422, *words, "<class>/<image>")


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"image_size": 4}, ("image_size 4", "8 to 128")),
        ({"image_size": 256}, ("image_size 256",)),
        ({"channels": 2}, ("channels 2", "1 (gray) or 3 (RGB)")),
    ],
)
def test_invalid_options(tmp_path, dest, kwargs, words):
    src = write_zip(tmp_path / "shapes.zip", class_members())
    refused(src, dest, "invalid_option", 422, *words, **kwargs)


def test_truncated_tar_gz_is_a_corrupt_archive(tmp_path, dest):
    src = write_tar(tmp_path / "cut.tar.gz", class_members(), "w:gz")
    src.write_bytes(src.read_bytes()[:-200])
    refused(src, dest, "corrupt_archive", 422, "cut.tar.gz")
