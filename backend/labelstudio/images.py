"""Fetch and decode task images: data URIs, http(s) URLs, and files hosted by Label Studio.

Label Studio keeps uploads at `/data/upload/...` and local storage at `/data/local-files/?d=...`;
both need the API token, so relative paths (and absolute URLs on the Label Studio host) are fetched
from LABEL_STUDIO_URL with the client's auth headers.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Callable, Mapping
from urllib.parse import urljoin, urlparse

import numpy as np
import requests
from PIL import Image, UnidentifiedImageError

from backend.labelstudio.tasks import BadInput

MAX_IMAGE_BYTES = 50 * 1024 * 1024


def decode_image(data: bytes, source: str) -> np.ndarray:
    """Bytes -> uint8 array (H, W, 3). Raises BadInput for anything Pillow cannot read."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise BadInput(f"cannot decode image from {source[:80]!r}: {exc}") from exc


class ImageFetcher:
    """Callable `ref -> array`, bound to one Label Studio (or none)."""

    def __init__(
        self,
        label_studio_url: str | None,
        headers: Callable[[], Mapping[str, str]] | None = None,
        timeout: float = 30.0,
        session: requests.Session | None = None,
    ) -> None:
        self.base = label_studio_url.rstrip("/") + "/" if label_studio_url else None
        self._headers = headers
        self.timeout = timeout
        self.session = session or requests.Session()

    def __call__(self, ref: str) -> np.ndarray:
        if ref.startswith("data:"):
            return decode_image(self._data_uri(ref), "data URI")
        parsed = urlparse(ref)
        if parsed.scheme in ("http", "https"):
            return decode_image(self._get(ref, self._is_label_studio(ref)), ref)
        if parsed.scheme == "" and ref.startswith("/"):
            if self.base is None:
                raise BadInput(f"image {ref!r} is hosted by Label Studio but LABEL_STUDIO_URL is not set")
            return decode_image(self._get(urljoin(self.base, ref.lstrip("/")), True), ref)
        raise BadInput(f"unsupported image reference {ref[:80]!r}: use a data URI, http(s) URL or /data/... path")

    def _is_label_studio(self, url: str) -> bool:
        if self.base is None:
            return False
        mine, theirs = urlparse(self.base), urlparse(url)
        return (mine.scheme, mine.netloc) == (theirs.scheme, theirs.netloc)

    @staticmethod
    def _data_uri(ref: str) -> bytes:
        header, _, payload = ref.partition(",")
        if ";base64" not in header:
            raise BadInput("image data URI must be base64-encoded")
        try:
            return base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise BadInput(f"image data URI is not valid base64: {exc}") from exc

    def _get(self, url: str, authenticated: bool) -> bytes:
        headers = dict(self._headers()) if (authenticated and self._headers) else {}
        try:
            resp = self.session.get(url, headers=headers, timeout=self.timeout, stream=True)
        except requests.RequestException as exc:
            raise BadInput(f"cannot fetch image {url}: {exc}") from exc
        with resp:
            if resp.status_code != 200:
                raise BadInput(f"cannot fetch image {url}: HTTP {resp.status_code}")
            data = resp.raw.read(MAX_IMAGE_BYTES + 1, decode_content=True)
        if len(data) > MAX_IMAGE_BYTES:
            raise BadInput(f"image {url} is larger than {MAX_IMAGE_BYTES} bytes")
        return data
