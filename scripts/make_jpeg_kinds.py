#!/usr/bin/env python3
"""Writes fixtures/jpeg-kinds/: one small JPEG per kind SPEC §2 says shard must accept.

Deterministic (no randomness); run with Pillow 12 (scripts/requirements-tf.txt):
    python3 scripts/make_jpeg_kinds.py fixtures/jpeg-kinds
Labels alternate cat/dog so the set shards into two classes.
"""
import io
import sys
from pathlib import Path

from PIL import Image, ImageCms, ImageDraw


def picture(width, height, seed):
    """A smooth gradient with a few shapes: compresses small, has edges to resize."""
    image = Image.new("RGB", (width, height))
    pixels = image.load()
    for y in range(height):
        for x in range(width):
            pixels[x, y] = ((x * 255 // max(width - 1, 1) + seed * 40) % 256,
                            (y * 255 // max(height - 1, 1) + seed * 70) % 256,
                            (128 + seed * 30) % 256)
    draw = ImageDraw.Draw(image)
    for i in range(3):
        cx = (seed * 37 + i * 53) % width
        cy = (seed * 29 + i * 41) % height
        r = max(3, min(width, height) // (4 + i))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=((i * 90) % 256, 255 - i * 60, (seed * 50) % 256))
    return image


def exif_bytes():
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 (TF ignores it; so do we by default)
    exif[0x010F] = "shardfeed-fixture"  # Make
    return exif.tobytes()


def main(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    kinds = [
        ("baseline-420", picture(240, 180, 1), dict(quality=75, subsampling="4:2:0")),
        ("progressive", picture(200, 200, 2), dict(quality=75, progressive=True)),
        ("baseline-422", picture(180, 240, 3), dict(quality=75, subsampling="4:2:2")),
        ("baseline-444", picture(220, 160, 4), dict(quality=75, subsampling="4:4:4")),
        ("grayscale", picture(200, 150, 5).convert("L"), dict(quality=75)),
        ("cmyk-adobe", picture(160, 200, 6).convert("CMYK"), dict(quality=75)),
        ("restart-markers", picture(240, 160, 7), dict(quality=75, restart_marker_blocks=1)),
        ("restart-rows", picture(160, 240, 8), dict(quality=75, restart_marker_rows=2)),
        ("exif-icc-xmp", picture(240, 180, 9), dict(quality=75, exif=exif_bytes(), icc_profile=srgb, xmp=xmp)),
        ("small-upscaled", picture(48, 36, 10), dict(quality=85)),
        ("extreme-wide", picture(2000, 50, 11), dict(quality=60)),
        ("extreme-tall", picture(40, 900, 12), dict(quality=60)),
    ]
    for i, (kind, image, options) in enumerate(kinds):
        label = "cat" if i % 2 == 0 else "dog"
        path = out / f"{label}.{kind}.jpg"
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", **options)
        path.write_bytes(buffer.getvalue())
        print(f"{path.name}: {image.size[0]}x{image.size[1]} {image.mode} {options_text(options)} {len(buffer.getvalue())} bytes")


def options_text(options):
    return " ".join(f"{k}={'<bytes>' if isinstance(v, bytes) else v}" for k, v in options.items())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "fixtures/jpeg-kinds")
