"""Image files to model input: one decoding path for training, evaluation and the saved module.

Files are read as bytes TensorFlow can decode (JPEG, PNG, GIF, BMP); other formats (WebP,
TIFF, CMYK JPEG...) are converted to PNG in memory with Pillow. Decoding and resizing then run
through ``decode_resize``, the same TensorFlow ops the saved module's ``DecodeImage`` layer
uses, so a served model sees exactly what training saw.
"""

from __future__ import annotations

import io
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_TF_FORMATS = {"JPEG", "PNG", "GIF", "BMP"}
# v2: JPEGs decode with the accurate integer DCT (v1: libjpeg's fast one), as Pillow does.
DECODER_VERSION = "tf-decode-image/jpeg-accurate-dct/bilinear-antialias/v2"


def image_bytes(path: str | Path) -> bytes:
    """Reads an image file as bytes TensorFlow's ``decode_image`` accepts.

    Raises:
        OSError: the file cannot be read or is not an image Pillow understands.
    """
    return decodable_bytes(Path(path).read_bytes())


def decodable_bytes(data: bytes) -> bytes:
    """``image_bytes`` for the contents of a file: the same bytes when TensorFlow decodes
    them, else the image re-encoded as PNG. Pillow only (no TensorFlow).

    Raises:
        OSError: not an image Pillow understands.
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:  # reads the header only
        if image.format in _TF_FORMATS and image.mode not in ("CMYK", "I", "I;16", "F"):
            return data
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
        return buffer.getvalue()


def read_inputs(kind: str, items) -> list:
    """Model inputs for examples: texts as they are, image files as decodable bytes (read in
    parallel)."""
    if kind == "text":
        return list(items)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(image_bytes, items))


def check_image(path: str | Path) -> str | None:
    """Returns why ``path`` cannot be used as an image (full decode), or ``None`` if it can."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()  # catches truncated and corrupt files
            image.convert("RGB")
    except Exception as exc:  # Pillow raises many types for bad files
        return f"{type(exc).__name__}: {exc}"
    return None


def decode_resize(data, size: tuple[int, int]):
    """TensorFlow ops: encoded bytes (scalar string tensor) to float32 RGB in [0, 1].

    JPEGs decode with libjpeg's accurate integer DCT (``decode_image`` would use the fast one,
    up to 6/255 off), so the pixels equal Pillow's and ``decode_resize_pil`` gives the same
    model input without TensorFlow.
    """
    import tensorflow as tf

    image = tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(data, channels=3, expand_animations=False),
    )
    image = tf.image.convert_image_dtype(image, tf.float32)
    # Antialiasing only changes downscaling; when no side shrinks, plain bilinear gives the
    # same pixels (within 1e-7) in half the time.
    shrinks = tf.reduce_any(tf.shape(image)[:2] > tf.constant(size, tf.int32))
    image = tf.cond(
        shrinks,
        lambda: tf.image.resize(image, size, method="bilinear", antialias=True),
        lambda: tf.image.resize(image, size, method="bilinear"),
    )
    image = tf.ensure_shape(image, [*size, 3])
    return tf.clip_by_value(image, 0.0, 1.0)


def decode_resize_pil(data: bytes, size: tuple[int, int]):
    """``decode_resize`` without TensorFlow (Pillow and NumPy): for processes that must not
    load TensorFlow, such as distributed feature workers running the TFLite engine.

    Pillow's bilinear filter on float32 ("F") channels is the same triangle filter as
    ``tf.image.resize(..., antialias=True)``, widened when shrinking: measured within 1.2e-5 of
    ``decode_resize`` on photos shrunk to 224x224 and 3.2e-6 on digits enlarged to it (8-bit
    resizing differed by 3.8e-3). PNG, GIF, BMP, TIFF and the formats ``image_bytes`` turns
    into PNG decode to the same pixels, and so do JPEGs: ``decode_resize`` decodes them with
    the accurate integer DCT, as Pillow does (``decode_image``'s default fast DCT was up to
    6/255 off). Like TensorFlow, EXIF orientation is ignored and an alpha channel dropped.

    Returns:
        A float32 ``(h, w, 3)`` NumPy array in [0, 1].
    """
    import io

    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.seek(0)  # the first frame of an animation, as expand_animations=False
        rgb = np.asarray(image.convert("RGB"), np.float32) / 255.0
    h, w = size
    if rgb.shape[:2] != (h, w):
        channels = [
            np.asarray(Image.fromarray(rgb[..., c], mode="F").resize((w, h), Image.BILINEAR))
            for c in range(3)
        ]
        rgb = np.stack(channels, axis=-1)
    return np.clip(rgb, 0.0, 1.0)


_BATCH_DECODERS: dict = {}


def decode_batch(blobs: list[bytes], size: tuple[int, int]):
    """Decodes encoded images to a float32 ``(n, h, w, 3)`` NumPy batch in [0, 1] in one
    compiled TensorFlow call.

    The input is always given as a string tensor: ``tf.constant([])`` would be float32, and a
    ``tf.function`` whose input signature rejects an argument keeps its lock (TF 2.21), so every
    later call of that decoder would hang.
    """
    import numpy as np
    import tensorflow as tf

    size = tuple(size)
    if not len(blobs):
        return np.zeros((0, *size, 3), np.float32)
    if size not in _BATCH_DECODERS:

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def decode(data):
            return tf.map_fn(
                lambda b: decode_resize(b, size),
                data,
                fn_output_signature=tf.TensorSpec([*size, 3], tf.float32),
                parallel_iterations=4,
            )

        _BATCH_DECODERS[size] = decode
    return _BATCH_DECODERS[size](tf.constant(list(blobs), dtype=tf.string)).numpy()


def load_images(paths, size: tuple[int, int]):
    """Decodes files to a float32 ``(n, h, w, 3)`` NumPy batch in [0, 1] (tests, predict)."""
    return decode_batch([image_bytes(p) for p in paths], size)
