"""Attachment thumbnails as Mailpit makes them (``GET .../part/{partID}/thumb``): a 180x120 JPEG.

An image is turned upright (EXIF orientation), then cropped to fill 180x120, or, when it is
smaller than that in either direction, scaled down to fit and centred on white (transparent
images come out on white too). Anything that is not an image, cannot be decoded, or claims more
than :data:`MAX_PIXELS` pixels gives a blank white thumbnail. Pillow reads the image's header
before decoding it, so a small file that declares a huge size is refused before memory is spent;
JPEGs are decoded at a reduced scale when that is enough (``draft``). Only the formats Mailpit
reads (and WebP) are tried, whatever the part's type says: never one that Pillow would hand to an
outside program (EPS to Ghostscript). Call it off the event loop: :func:`submit` runs it in the
renderer thread, so at most :data:`RENDERERS` images are decoded at once whatever the number of
requests (each may hold :data:`MAX_PIXELS` decoded pixels, about 250 MB at the cap).
"""

from __future__ import annotations

import concurrent.futures
import functools
import io
import warnings

from PIL import Image, ImageOps

__all__ = ["HEIGHT", "MAX_PIXELS", "RENDERERS", "WIDTH", "blank", "submit", "thumbnail"]

WIDTH, HEIGHT = 180, 120
MAX_PIXELS = 20_000_000  # Mailpit's limit: a larger image gets the blank thumbnail
QUALITY = 70  # JPEG quality, as Mailpit's
FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP")  # decoders tried (Pillow's names)
RENDERERS = 1  # thumbnails decoded at once in the process (the others wait their turn, off the loop)
_renderers = concurrent.futures.ThreadPoolExecutor(RENDERERS, thread_name_prefix="smtp-sink-thumbnail")


def submit(content_type: str, data: bytes) -> concurrent.futures.Future[bytes]:
    """:func:`thumbnail` in the renderer thread (await it with ``asyncio.wrap_future``)."""
    return _renderers.submit(thumbnail, content_type, data)


def thumbnail(content_type: str, data: bytes) -> bytes:
    """The 180x120 JPEG thumbnail of a part with this content type and content; never raises."""
    if not content_type.startswith("image/"):
        return blank()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _render(data)
    except Exception:  # not an image Pillow can read, too large, truncated...
        return blank()


def _render(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data), formats=FORMATS) as image:
        width, height = image.size
        if width * height > MAX_PIXELS or width <= 0 or height <= 0:
            return blank()
        image.draft("RGB", (WIDTH, HEIGHT))  # JPEG: decode at 1/2, 1/4 or 1/8 scale when that suffices
        upright = ImageOps.exif_transpose(image)
    mode = "RGBA" if _transparent(upright) else "RGB"
    picture = upright if upright.mode == mode else upright.convert(mode)
    width, height = picture.size
    box: tuple[float, float, float, float]
    if width < WIDTH or height < HEIGHT:  # fit: scale down only, keep the aspect
        scale = min(WIDTH / width, HEIGHT / height, 1.0)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        box = (0.0, 0.0, float(width), float(height))
    else:  # fill: scale and crop the middle
        scale = max(WIDTH / width, HEIGHT / height)
        crop_w, crop_h = WIDTH / scale, HEIGHT / scale
        size = (WIDTH, HEIGHT)
        box = ((width - crop_w) / 2, (height - crop_h) / 2, (width + crop_w) / 2, (height + crop_h) / 2)
    if size != picture.size:
        picture = picture.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
    canvas = Image.new(mode, (WIDTH, HEIGHT), "white")
    offset = ((WIDTH - picture.width) // 2, (HEIGHT - picture.height) // 2)
    if mode == "RGBA":
        canvas.alpha_composite(picture, offset)
    else:
        canvas.paste(picture, offset)
    return _jpeg(canvas.convert("RGB"))


def _transparent(image: Image.Image) -> bool:
    """Whether the image has transparent areas to show on white (Mailpit overlays it on white)."""
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info)


@functools.cache
def blank() -> bytes:
    """The blank (white) thumbnail."""
    return _jpeg(Image.new("RGB", (WIDTH, HEIGHT), "white"))


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=QUALITY)
    return out.getvalue()
