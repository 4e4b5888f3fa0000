"""Pillow in one place: uploads re-encoded as square PNGs (avatars, later thumbnails) and initials images."""

from __future__ import annotations

import colorsys
import functools
import hashlib
import io
import warnings
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

# What an upload may be; decided by Pillow reading the bytes, never by the name or the Content-Type sent.
ACCEPTED_FORMATS = frozenset({"PNG", "JPEG", "MPO", "GIF", "WEBP"})  # MPO: a phone camera's JPEG
# The most pixels an upload may declare: 40 MP (an 8000×5000 photo). A small file can declare a huge canvas
# (a decompression bomb); its size is read from the header and refused before any pixel is decoded.
MAX_PIXELS = 40_000_000
# Pillow's own guard is set to the same bound, so no other path through it decodes more, and its warning
# (past the bound, below twice it) is an error: set once here, not per call (catch_warnings is not thread-safe).
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)

_FONT_FILES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
)


class ImageRefused(ValueError):
    """Not an image we take (undecodable, another format, too many pixels); the message says which, in plain words."""


def square_pngs(data: bytes, sizes: tuple[int, ...]) -> dict[int, bytes]:
    """The image in `data`, centre-cropped to a square and resized to each size, as PNG bytes.

    Only the header is read before the pixel count is checked; the first frame of an animation is taken.
    Whatever was uploaded, the answer is pixels Pillow drew again: no byte of the upload survives.
    """
    try:
        image = Image.open(io.BytesIO(data))  # lazy: the header only
        width, height = image.size
        if image.format not in ACCEPTED_FORMATS:
            raise ImageRefused("The picture must be a PNG, JPEG, GIF or WebP image")
        if width <= 0 or height <= 0 or width * height > MAX_PIXELS:
            raise ImageRefused(f"The picture is too large: at most {MAX_PIXELS // 1_000_000} megapixels")
        image.seek(0)
        if image.format in ("JPEG", "MPO"):
            # A JPEG decodes at 1/2, 1/4 or 1/8 scale for nothing: a 40 MP photo becomes about 1 MP in memory.
            image.draft("RGB", (2 * max(sizes), 2 * max(sizes)))
        image.load()
        image = ImageOps.exif_transpose(image)
    except ImageRefused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRefused(f"The picture is too large: at most {MAX_PIXELS // 1_000_000} megapixels") from None
    except Exception:  # noqa: BLE001 - whatever Pillow raises on bytes that are not a readable image
        raise ImageRefused("The file is not a picture that can be read (PNG, JPEG, GIF or WebP)") from None
    image = image.convert("RGBA")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    return {size: _png(square.resize((size, size), Image.Resampling.LANCZOS)) for size in sizes}


def hue_of(seed: str) -> float:
    """A stable hue in [0, 1) for an id: the same colour on every server and every render."""
    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:4], "big") / 2**32


@functools.lru_cache(maxsize=1024)  # a few KB each; a page of avatars asks for the same few again
def initials_png(initials: str, seed: str, size: int) -> bytes:
    """A square PNG with up to two initials in white on a colour chosen by `seed` (deterministic)."""
    red, green, blue = colorsys.hls_to_rgb(hue_of(seed), 0.42, 0.55)
    image = Image.new("RGB", (size, size), (round(red * 255), round(green * 255), round(blue * 255)))
    text = initials[:2].upper() or "?"
    draw = ImageDraw.Draw(image)
    font = _font(round(size * 0.42))
    draw.text((size / 2, size / 2), text, fill=(255, 255, 255), font=font, anchor="mm")
    return _png(image)


def _font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in _FONT_FILES:
        if Path(path).is_file():
            return ImageFont.truetype(path, px)
    return ImageFont.load_default(px)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


THUMBNAIL_WIDTH = 400
# The media type of each format taken, for a file whose upload said something else.
_MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "MPO": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}


def dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) of an image's bytes from its header, or None."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:  # noqa: BLE001 - whatever Pillow raises on bytes that are not an image
        return None


def sniff(data: bytes) -> str | None:
    """The media type of an image we take, read from its bytes by Pillow (the header only), else None."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return _MEDIA_TYPES.get(image.format or "")
    except Exception:  # noqa: BLE001 - whatever Pillow raises on bytes that are not an image
        return None



def thumbnail(data: bytes, width: int = THUMBNAIL_WIDTH) -> tuple[bytes, str] | None:
    """A message image's preview at most `width` px wide, upright (EXIF orientation applied) and without EXIF:
    JPEG for photos (no alpha), PNG otherwise; None for what is not an image we take or declares more than
    MAX_PIXELS (a decompression bomb: checked on the header, before any pixel is decoded)."""
    try:
        image = Image.open(io.BytesIO(data))  # lazy: the header only
        w, h = image.size
        if image.format not in ACCEPTED_FORMATS or w <= 0 or h <= 0 or w * h > MAX_PIXELS:
            return None
        image.seek(0)
        photo = image.format in ("JPEG", "MPO")
        if photo:
            image.draft("RGB", (2 * width, 2 * width * h // w + 1))
        image.load()
        image = ImageOps.exif_transpose(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None
    except Exception:  # noqa: BLE001 - whatever Pillow raises on bytes that are not a readable image
        return None
    if image.width > width:
        image = image.resize((width, max(1, round(image.height * width / image.width))), Image.Resampling.LANCZOS)
    # Pixels drawn again, so no byte (nor EXIF, nor a trailing payload) of the upload survives.
    if photo:
        out = io.BytesIO()
        image.convert("RGB").save(out, format="JPEG", quality=85)
        return out.getvalue(), "image/jpeg"
    return _png(image.convert("RGBA")), "image/png"
