"""Pictures and pages of explanations: heatmap overlays with the label in the corner, words
coloured by attribution, and the ``index.html`` gallery."""

from __future__ import annotations

import base64
import html
import io
import os
import uuid
from pathlib import Path

import numpy as np

MIN_SIDE, MAX_SIDE = 224, 512


def overlay(path: str | Path, amap: np.ndarray, caption: str, signed: bool = False):
    """The image file with ``amap`` (any size; stretched over the image, as the module's
    ``DecodeImage`` stretches the image) as a translucent heatmap and ``caption`` in the
    top-left corner, as a PIL image.

    Grad-CAM maps (``signed=False``, in [0, 1]) use the jet colours, transparent where the map
    is low; SHAP maps (``signed=True``) use red for evidence for the class and blue against.
    """
    from matplotlib import colormaps
    from PIL import Image, ImageDraw, ImageFont

    with Image.open(path) as source:
        image = source.convert("RGB")
    w, h = image.size
    scale = (
        max(1.0, MIN_SIDE / max(w, h)) if max(w, h) < MIN_SIDE else min(1.0, MAX_SIDE / max(w, h))
    )
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    image = image.resize(size, Image.BILINEAR)
    amap = np.asarray(amap, np.float32)
    if signed:
        peak = float(np.abs(amap).max()) or 1.0
        values = np.clip(amap / peak, -1, 1)
        colours = colormaps["RdBu_r"]((values + 1) / 2)[..., :3]
        alpha = np.abs(values) * 0.75
    else:
        values = np.clip(amap, 0, 1)
        colours = colormaps["jet"](values)[..., :3]
        alpha = 0.2 + 0.45 * values
    heat = Image.fromarray((colours * 255).astype(np.uint8)).resize(size, Image.BILINEAR)
    alpha_img = Image.fromarray((alpha * 255).astype(np.uint8)).resize(size, Image.BILINEAR)
    base = np.asarray(image, np.float32)
    a = np.asarray(alpha_img, np.float32)[..., None] / 255
    blended = Image.fromarray((base * (1 - a) + np.asarray(heat, np.float32) * a).astype(np.uint8))
    draw = ImageDraw.Draw(blended)
    font = ImageFont.load_default(size=max(12, size[1] // 14))
    box = draw.textbbox((4, 2), caption, font=font)
    draw.rectangle((0, 0, box[2] + 4, box[3] + 4), fill=(0, 0, 0))
    draw.text((4, 2), caption, fill=(255, 255, 255), font=font)
    return blended


def png_bytes(image, max_side: int | None = None) -> bytes:
    """A PIL image as PNG bytes, shrunk to ``max_side`` first when given."""
    if max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def coloured_text(text: str, spans, values) -> str:
    """HTML of ``text`` with each word's background coloured by its attribution: red raised
    the explained class's probability, blue lowered it; the value is in the tooltip."""
    values = np.asarray(values, np.float64)
    peak = float(np.abs(values).max()) if len(values) else 0.0
    parts, pos = [], 0
    for (a, b), v in zip(spans, values, strict=True):
        parts.append(html.escape(text[pos:a]))
        strength = abs(v) / peak * 0.85 if peak else 0.0
        rgb = "220,38,38" if v > 0 else "37,99,235"
        parts.append(
            f'<span class="w" style="background:rgba({rgb},{strength:.2f})" '
            f'title="{v:+.4f}">{html.escape(text[a:b])}</span>'
        )
        pos = b
    parts.append(html.escape(text[pos:]))
    return "".join(parts)


def write_atomic(path: Path, data: bytes | str) -> None:
    """Writes a whole file or nothing (temp file, then rename)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    if isinstance(data, str):
        tmp.write_text(data, encoding="utf-8")
    else:
        tmp.write_bytes(data)
    os.replace(tmp, path)


def gallery(title: str, kind: str, rows: list[dict], check: dict | None, notes: list[str]) -> str:
    """The ``index.html`` of an explanation folder."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("graft.explanation", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )
    return env.get_template("explain.html.j2").render(
        title=title, kind=kind, rows=rows, check=check, notes=notes
    )
