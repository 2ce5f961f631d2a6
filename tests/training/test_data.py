"""Data readers: every image format and mode, corrupt files, splits, text tables."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from graft.data import from_csv, from_folder
from graft.data.images import image_bytes, load_images
from graft.errors import InvalidArgumentError


def _image(mode: str, seed: int, size=(20, 14)) -> Image.Image:
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    if mode == "P":
        return rgb.convert("P", palette=Image.ADAPTIVE)
    return rgb.convert(mode)


FORMATS = [
    ("a.jpg", "RGB", "JPEG"),
    ("b.png", "RGBA", "PNG"),
    ("c.bmp", "RGB", "BMP"),
    ("d.gif", "P", "GIF"),
    ("e.webp", "RGB", "WEBP"),
    ("f.jpg", "CMYK", "JPEG"),
    ("g.png", "L", "PNG"),
    ("h.tiff", "RGB", "TIFF"),
    ("i.png", "I;16", "PNG"),
]


def write_mixed_folder(root, classes=("cat", "dog"), per_class: int | None = None):
    per_class = per_class or len(FORMATS)
    for c, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            filename, mode, fmt = FORMATS[i % len(FORMATS)]
            _image(mode, seed=c * 100 + i).save(folder / f"{i}{filename}", format=fmt)
    return root


def test_every_format_and_mode_decodes(tmp_path):
    write_mixed_folder(tmp_path / "data")
    splits = from_folder(tmp_path / "data", val_fraction=0.2, test_fraction=0.2)
    items = splits.train.items + splits.val.items + splits.test.items
    assert len(items) == 2 * len(FORMATS) and not splits.skipped
    batch = load_images(items, (16, 16))
    assert batch.shape == (len(items), 16, 16, 3) and batch.dtype == np.float32
    assert 0.0 <= batch.min() and batch.max() <= 1.0 and batch.std() > 0.1


def test_an_empty_batch_decodes_and_the_decoder_still_works(tmp_path):
    from graft.data.images import decode_batch

    Image.new("RGB", (9, 7), (255, 0, 0)).save(tmp_path / "red.png")
    assert decode_batch([], (5, 5)).shape == (0, 5, 5, 3)
    red = decode_batch([image_bytes(tmp_path / "red.png")], (5, 5))
    np.testing.assert_allclose(red[0, 2, 2], [1.0, 0.0, 0.0])


@pytest.mark.parametrize("name", ["x.png", "x.jpg", "gray.jpg"])
def test_decoding_matches_pillow(tmp_path, name):
    """TF decoding equals Pillow's pixels (no resize), so reports show what was fed; JPEGs too
    (the accurate integer DCT, as Pillow's libjpeg uses)."""
    path = tmp_path / name
    _image("L" if name.startswith("gray") else "RGB", 1, size=(16, 16)).save(path, quality=90)
    ours = load_images([path], (16, 16))[0]
    pillow = np.asarray(Image.open(path).convert("RGB"), np.float32)
    np.testing.assert_allclose(ours * 255, pillow, atol=0.51)


def test_decoding_without_tensorflow_matches_tensorflow(tmp_path):
    """``decode_resize_pil`` (for workers without TensorFlow) against the TF decoder, shrinking
    and enlarging, every format, JPEG included (both decode with the accurate DCT)."""
    from sklearn.datasets import load_sample_images

    from graft.data.images import decode_resize_pil

    write_mixed_folder(tmp_path / "mixed")
    files = sorted((tmp_path / "mixed").rglob("*.*"))
    for photo, array in enumerate(load_sample_images().images):  # 427x640 photos
        Image.fromarray(array).save(tmp_path / f"photo{photo}.png")
        Image.fromarray(array).save(tmp_path / f"photo{photo}.jpg", quality=90)
        files += [tmp_path / f"photo{photo}.png", tmp_path / f"photo{photo}.jpg"]
    for size in [(224, 224), (16, 16), (64, 48), (500, 700)]:
        reference = load_images(files, size)
        for path, expected in zip(files, reference, strict=True):
            ours = decode_resize_pil(image_bytes(path), size)
            assert ours.shape == (*size, 3) and ours.dtype == np.float32
            assert np.abs(ours - expected).max() < 5e-5, (path.name, size)


def test_cmyk_and_webp_are_converted(tmp_path):
    _image("CMYK", 2).save(tmp_path / "c.jpg")
    _image("RGB", 3).save(tmp_path / "w.webp")
    assert image_bytes(tmp_path / "c.jpg")[:4] == b"\x89PNG"
    assert image_bytes(tmp_path / "w.webp")[:4] == b"\x89PNG"
    _image("RGB", 4).save(tmp_path / "ok.jpg")
    assert image_bytes(tmp_path / "ok.jpg") == (tmp_path / "ok.jpg").read_bytes()


def test_corrupt_files_are_skipped_and_listed(tmp_path, caplog):
    root = write_mixed_folder(tmp_path / "data", per_class=5)
    good = (root / "cat" / "0a.jpg").read_bytes()
    (root / "cat" / "broken.jpg").write_bytes(good[: len(good) // 3])
    (root / "dog" / "notes.png").write_text("this is not an image")
    (root / "dog" / "empty.bmp").write_bytes(b"")
    (root / "dog" / "readme.txt").write_text("ignored: not an image suffix")
    with caplog.at_level(logging.WARNING):
        splits = from_folder(root, val_fraction=0.2, test_fraction=0.2)
    skipped = sorted(s.item.rsplit("/", 1)[-1] for s in splits.skipped)
    assert skipped == ["broken.jpg", "empty.bmp", "notes.png"]
    assert "Skipped 3 unreadable image(s)" in caplog.text
    all_items = splits.train.items + splits.val.items + splits.test.items
    assert len(all_items) == 10 and not any("broken" in i for i in all_items)


def test_explicit_split_folders(tmp_path):
    for split, n in (("train", 4), ("validation", 2), ("test", 2)):
        write_mixed_folder(tmp_path / "d" / split, per_class=n)
    splits = from_folder(tmp_path / "d")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (8, 4, 4)
    assert splits.class_names == ("cat", "dog")
    assert all("/test/" in i for i in splits.test.items)


def test_train_folder_without_test_is_an_error(tmp_path):
    write_mixed_folder(tmp_path / "d" / "train", per_class=3)
    write_mixed_folder(tmp_path / "d" / "val", per_class=3)
    with pytest.raises(InvalidArgumentError, match=r"no test/ folder"):
        from_folder(tmp_path / "d")


def test_stratified_split_is_seeded_and_disjoint(tmp_path):
    root = write_mixed_folder(tmp_path / "d", classes=("a", "b", "c"), per_class=9)
    s1 = from_folder(root, val_fraction=0.2, test_fraction=0.2, seed=1)
    s2 = from_folder(root, val_fraction=0.2, test_fraction=0.2, seed=1)
    s3 = from_folder(root, val_fraction=0.2, test_fraction=0.2, seed=2)
    assert s1 == s2 and s1.test.items != s3.test.items
    parts = [set(s1.train.items), set(s1.val.items), set(s1.test.items)]
    assert sum(map(len, parts)) == 27 and len(set.union(*parts)) == 27
    assert s1.test.counts() == {"a": 2, "b": 2, "c": 2}
    assert s1.train.counts() == {"a": 5, "b": 5, "c": 5}


@pytest.mark.parametrize(
    "layout, pattern",
    [
        ({"only": 3}, r"at least two classes.*Received: classes=\['only'\]"),
        ({"a": 3, "b": 0}, r"these have none.*: b\. .*Received: empty_classes=\['b'\]"),
        ({"a": 3, "b": 1}, r"Class 'b' has 1 examples, too few"),
    ],
)
def test_bad_class_layouts(tmp_path, layout, pattern):
    for name, n in layout.items():
        (tmp_path / name).mkdir()
        for i in range(n):
            _image("RGB", i).save(tmp_path / name / f"{i}.png")
    with pytest.raises(InvalidArgumentError, match=pattern):
        from_folder(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(InvalidArgumentError, match=r"is not a folder.*Received: directory="):
        from_folder(tmp_path / "nope")


TEXTS = {
    "sport": ["the match ended", "a late goal won it", "the team trained"] * 3,
    "food": ["bake the bread", "add salt to taste", "simmer the soup"] * 3,
}


def _rows():
    return [(t, label) for label, texts in TEXTS.items() for t in texts]


def test_csv_tsv_jsonl(tmp_path):
    (tmp_path / "d.csv").write_text(
        "review,topic\n" + "\n".join(f'"{t}, really",{lab}' for t, lab in _rows()) + "\n,food\n"
    )
    (tmp_path / "d.tsv").write_text(
        "text\tlabel\n" + "\n".join(f"{t}\t{lab}" for t, lab in _rows()) + "\n"
    )
    (tmp_path / "d.jsonl").write_text(
        "\n".join(json.dumps({"text": t, "label": lab}) for t, lab in _rows()) + "\n"
    )
    csv = from_csv(tmp_path / "d.csv", text_column="review", label_column="topic")
    assert csv.class_names == ("food", "sport")
    assert len(csv.skipped) == 1 and "empty" in csv.skipped[0].reason
    assert any(", really" in t for t in csv.train.items)  # quoted commas kept
    for name in ("d.tsv", "d.jsonl"):
        s = from_csv(tmp_path / name)
        assert len(s.train) + len(s.val) + len(s.test) == 18 and s.kind == "text"


def test_missing_label_column_lists_the_real_ones(tmp_path):
    (tmp_path / "d.csv").write_text("text,category\nhello,a\n")
    with pytest.raises(
        InvalidArgumentError,
        match=r"no column 'label'; its columns are \['text', 'category'\].*label_column='label'",
    ):
        from_csv(tmp_path / "d.csv")


def test_single_text_class(tmp_path):
    (tmp_path / "d.csv").write_text("text,label\n" + "hello,a\n" * 5)
    with pytest.raises(InvalidArgumentError, match="at least two classes"):
        from_csv(tmp_path / "d.csv")


def test_unsupported_table_format(tmp_path):
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(InvalidArgumentError, match=r"\.csv, \.tsv or \.jsonl"):
        from_csv(tmp_path / "d.xlsx")


def test_split_column_gives_the_splits(tmp_path):
    rows = _rows()
    splits = ["train", "train", "train", "Validation", "test", "train", "dev", "TEST", "train"] * 2
    (tmp_path / "d.jsonl").write_text(
        "\n".join(
            json.dumps({"text": t, "label": lab, "part": part})
            for (t, lab), part in zip(rows, splits, strict=True)
        )
        + "\n"
    )
    s = from_csv(tmp_path / "d.jsonl", split_column="part")
    assert (len(s.train), len(s.val), len(s.test)) == (10, 4, 4)
    expected_test = [t for (t, _), p in zip(rows, splits, strict=True) if p.lower() == "test"]
    assert list(s.test.items) == expected_test


def test_split_column_without_val_draws_it_from_train(tmp_path):
    rows = _rows()
    (tmp_path / "d.csv").write_text(
        "text,label,split\n"
        + "\n".join(
            f"{t},{lab},{'test' if i % 6 == 0 else 'train'}" for i, (t, lab) in enumerate(rows)
        )
        + "\n"
    )
    s = from_csv(tmp_path / "d.csv", split_column="split")
    assert len(s.test) == 3 and len(s.val) >= 2 and len(s.train) + len(s.val) == 15
    assert not set(s.val.items) & set(s.test.items)


def test_split_column_with_an_unknown_split_is_an_error(tmp_path):
    (tmp_path / "d.csv").write_text("text,label,split\nhello,a,train\nbye,b,holdout\n")
    with pytest.raises(
        InvalidArgumentError, match=r"line 3.*train, val.*Received: split='holdout'"
    ):
        from_csv(tmp_path / "d.csv", split_column="split")
    with pytest.raises(InvalidArgumentError, match=r"no column 'fold'.*split_column='fold'"):
        from_csv(tmp_path / "d.csv", split_column="fold")
