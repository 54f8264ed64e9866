"""Fetch and decode task images: data URIs, http(s) URLs, and files hosted by Label Studio.

Label Studio keeps uploads at `/data/upload/...` and local storage at `/data/local-files/?d=...`;
both need the API token, so relative paths (and absolute URLs on the Label Studio host) are fetched
from LABEL_STUDIO_URL with the client's auth headers.

Task data is written by whoever may import tasks, so every reference is treated as hostile:

* Server-side request forgery: loopback, private, link-local (cloud metadata), multicast, reserved
  and unspecified addresses are refused unless LABELLOOP_IMAGE_ALLOW names them; Label Studio's own
  origin always may serve images. The check runs on the *resolved* addresses, on every redirect hop
  (redirects are followed here, not by a library).
* DNS rebinding: a name is resolved once, its addresses are checked, and the TCP connection is made
  to a checked address; the name only goes into the Host header and the TLS server name (SNI and the
  certificate check), so a second, different DNS answer is never used.
* The token: Label Studio's auth headers go only to Label Studio's origin, and only when the fetch
  started there (a foreign server cannot redirect us into an authenticated request to Label Studio).
* Slow, big and bomb images: one total deadline per image (DNS, connect, redirects, headers, body;
  a timer cuts the socket so a server dripping bytes cannot hold a request or a training round), a
  byte cap (also for data URIs), and a pixel cap checked on the header before anything is decoded.

Everything refused is :class:`BadInput`, so /predict answers 400 and a training round skips the task
with its reason.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import http.client
import io
import ipaddress
import os
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urljoin, urlsplit

import numpy as np
from PIL import Image, UnidentifiedImageError
from requests.utils import requote_uri

from backend.labelstudio.tasks import BadInput

if TYPE_CHECKING:
    from backend.config import Settings

MAX_IMAGE_BYTES = 50 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_DEADLINE_SECONDS = 15.0
MAX_REDIRECTS = 5
ALLOW_SETTING = "LABELLOOP_IMAGE_ALLOW"
DEADLINE_SETTING = "LABELLOOP_IMAGE_DEADLINE_SECONDS"
BYTES_SETTING = "LABELLOOP_IMAGE_MAX_BYTES"
PIXELS_SETTING = "LABELLOOP_IMAGE_MAX_PIXELS"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``(host, port) -> addresses`` as strings; the default asks the system resolver (getaddrinfo).
Resolver = Callable[[str, int], Sequence[str]]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_CHUNK = 64 * 1024
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Raster formats decoded for a model. Not EPS/PS: Pillow hands those to Ghostscript.
_DECODABLE = ("PNG", "JPEG", "MPO", "GIF", "BMP", "DIB", "WEBP", "TIFF", "PPM", "TGA", "ICO", "JPEG2000",
              "AVIF", "QOI")


# --------------------------------------------------------------------------- policy
def parse_allowlist(entries: Iterable[str]) -> tuple[frozenset[str], tuple[IPNetwork, ...]]:
    """LABELLOOP_IMAGE_ALLOW entries -> (host names, networks); a single IP becomes a /32 or /128.

    Raises ValueError naming the setting for an entry that is none of host, IP, CIDR network (a URL
    or a host:port is a common slip: the allowlist is about addresses, not ports).
    """
    hosts: set[str] = set()
    networks: list[IPNetwork] = []
    for raw in entries:
        entry = raw.strip().lower()
        if not entry:
            continue
        bare = entry[1:-1] if entry.startswith("[") and entry.endswith("]") else entry
        if "://" in bare or "@" in bare or any(c.isspace() for c in bare):
            raise ValueError(f"{ALLOW_SETTING} entry {raw!r}: name a host, an IP or a CIDR network, not a URL")
        try:
            network = ipaddress.ip_network(bare, strict=False)
        except ValueError as exc:
            if "/" in bare or bare.count(":") == 1:
                raise ValueError(f"{ALLOW_SETTING} entry {raw!r}: not a host, an IP or a CIDR network "
                                 f"(ports cannot be named): {exc}") from exc
            hosts.add(bare.rstrip("."))
            continue
        mapped = network.network_address.ipv4_mapped if isinstance(network, ipaddress.IPv6Network) else None
        if mapped is not None and network.prefixlen >= 96:  # ::ffff:a.b.c.d is matched as a.b.c.d
            network = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
        networks.append(network)
    return frozenset(hosts), tuple(networks)


@dataclass(frozen=True)
class ImagePolicy:
    """What one image fetch may do. Process-wide: built from :class:`backend.config.Settings`."""

    allow: tuple[str, ...] = ()
    max_bytes: int = MAX_IMAGE_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS
    max_redirects: int = MAX_REDIRECTS
    _hosts: frozenset[str] = field(init=False, repr=False, compare=False)
    _networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        hosts, networks = parse_allowlist(self.allow)
        object.__setattr__(self, "_hosts", hosts)
        object.__setattr__(self, "_networks", networks)

    @classmethod
    def from_settings(cls, settings: Settings) -> ImagePolicy:
        return cls(allow=tuple(settings.image_allow), max_bytes=settings.image_max_bytes,
                   max_pixels=settings.image_max_pixels, deadline_seconds=settings.image_deadline_seconds)

    def allows(self, host: str, address: IPAddress) -> bool:
        """Whether the operator named this host or a network holding this address."""
        address = _canonical(address)
        if host.lower().rstrip(".") in self._hosts:
            return True
        return any(address.version == net.version and address in net for net in self._networks)


_policy: ImagePolicy | None = None


def configure(policy: ImagePolicy | None) -> None:
    """Set the process-wide policy (the composition root does, from its Settings); None: re-read the environment.

    Without a call the policy comes from ``Settings.from_env()`` the first time it is needed, which is
    what a server process is configured with anyway.
    """
    global _policy
    _policy = policy


def current_policy() -> ImagePolicy:
    """The process-wide policy (see :func:`configure`)."""
    global _policy
    if _policy is None:
        from backend.config import Settings

        _policy = ImagePolicy.from_settings(Settings.from_env())
    return _policy


# --------------------------------------------------------------------------- addresses
def _canonical(address: IPAddress) -> IPAddress:
    """``::ffff:a.b.c.d`` is the IPv4 host a.b.c.d: check and match it as such."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 hosts an IPv6 address reaches through a translation (6to4, Teredo, NAT64)."""
    found: list[ipaddress.IPv4Address] = []
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def forbidden_reason(address: IPAddress) -> str | None:
    """Why an address is not fetched from without an allowlist entry; None for a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        reason = forbidden_reason(address.ipv4_mapped)  # the IPv4 host it is, public or not
        return f"{reason}, as {address.ipv4_mapped}" if reason else None
    if isinstance(address, ipaddress.IPv6Address):
        for inner in _embedded_ipv4(address):
            reason = forbidden_reason(inner)
            if reason:
                return f"{reason}, as {inner}"
    for kind in ("loopback", "link-local", "multicast", "unspecified", "private", "reserved"):
        if getattr(address, "is_" + kind.replace("-", "_")):
            return kind
    if not address.is_global:
        return "non-public"
    return None


def _within(seconds: float, call: Callable[[], Any]) -> Any:
    """Run a call that cannot be interrupted (getaddrinfo) and stop waiting for it after ``seconds``.

    A hung lookup keeps its daemon thread until the resolver gives up, but not the request or the round.
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name="labelloop-image-resolve", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {seconds:.1f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _system_resolver(host: str, port: int) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


# --------------------------------------------------------------------------- one request
@dataclass(frozen=True)
class _Target:
    """One hop's URL, taken apart: where to connect and what to ask for."""

    url: str
    scheme: str
    host: str  # lower case, IPv6 without brackets, IDNA-encoded
    port: int
    path: str  # path and query, as sent
    userinfo: tuple[str, str] | None
    show_query: bool = False  # Label Studio's queries name files (local storage); others may hold signatures

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port

    @property
    def shown(self) -> str:
        """The URL for messages: without credentials, and without the query of a URL not on Label Studio
        (a presigned URL's query is a secret that would end up in the iteration history)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port == _DEFAULT_PORTS[self.scheme] else f":{self.port}"
        text = f"{self.scheme}://{host}{port}{self.path if self.show_query else self.path.split('?', 1)[0]}"
        return text if len(text) <= 200 else text[:197] + "..."


def _target(url: str) -> _Target:
    """Parse (and percent-encode, as requests would) one hop's URL; anything but http(s) is refused."""
    try:
        parts = urlsplit(requote_uri(url))
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise BadInput(f"image URL {url[:80]!r} is malformed: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise BadInput(f"image URL {url[:80]!r}: only http and https are fetched")
    try:
        host = (parts.hostname or "").rstrip(".")
        port = parts.port or _DEFAULT_PORTS[scheme]
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except (ValueError, UnicodeError) as exc:
        raise BadInput(f"image URL {url[:80]!r} is malformed: {exc}") from exc
    if not host:
        raise BadInput(f"image URL {url[:80]!r} names no host")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    userinfo = (unquote(parts.username), unquote(parts.password or "")) if parts.username is not None else None
    return _Target(parts.geturl(), scheme, host, port, path, userinfo)


class _Deadline:
    """One image's time budget, shared by every step of every hop."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def expired(self, shown: str) -> BadInput:
        return BadInput(f"image {shown} did not arrive within {self.seconds:g} s ({DEADLINE_SETTING})")


class _Pinned:
    """An http.client connection to ``host`` over a socket to one of the already checked ``addresses``.

    http.client never resolves ``host`` itself here: the name only goes into the Host header (and, for
    HTTPS, the TLS server name), which is what makes the address check hold against DNS rebinding.
    """

    sock: Any
    port: int
    timeout: Any

    def __init__(self, host: str, port: int, addresses: Sequence[IPAddress], deadline: _Deadline,
                 timeout: float, **kwargs: Any) -> None:
        super().__init__(host, port, timeout=timeout, **kwargs)  # type: ignore[call-arg]
        self._addresses = list(addresses)
        self._deadline = deadline
        self._raw: socket.socket | None = None
        self.aborted = False

    def _open_socket(self) -> socket.socket:
        last: OSError = OSError("no address to connect to")
        for address in self._addresses:
            remaining = self._deadline.remaining()
            if self.aborted or remaining <= 0:
                raise TimeoutError("deadline passed while connecting")
            try:
                self._raw = socket.create_connection((str(address), self.port), timeout=min(self.timeout, remaining))
            except OSError as exc:
                last = exc
                continue
            return self._raw
        raise last

    def abort(self) -> None:
        """Cut the connection from the deadline's timer thread: a read blocked on it returns at once."""
        self.aborted = True
        for sock in (self.sock, self._raw):
            if sock is not None:
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's, not SSLSocket's


class _PinnedHTTPConnection(_Pinned, http.client.HTTPConnection):
    def connect(self) -> None:
        self.sock = self._open_socket()


class _PinnedHTTPSConnection(_Pinned, http.client.HTTPSConnection):
    def connect(self) -> None:
        raw = self._open_socket()
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


_tls: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    """Verify certificates against what requests would use: REQUESTS_CA_BUNDLE, else certifi's bundle."""
    global _tls
    if _tls is None:
        cafile = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if not cafile:
            with contextlib.suppress(ImportError):
                import certifi

                cafile = certifi.where()
        _tls = ssl.create_default_context(cafile=cafile or None)
    return _tls


# --------------------------------------------------------------------------- decoding
_formats: tuple[str, ...] | None = None


def _decodable_formats() -> tuple[str, ...]:
    """The allowed formats this Pillow build can open (an unknown name would make Image.open fail)."""
    global _formats
    if _formats is None:
        Image.init()
        _formats = tuple(f for f in _DECODABLE if f in Image.OPEN)
    return _formats


def decode_image(data: bytes, source: str, max_pixels: int | None = None) -> np.ndarray:
    """Bytes -> uint8 array (H, W, 3). Raises BadInput for anything that cannot or should not be decoded.

    ``Image.open`` reads only the header, so the size is checked before a pixel is decoded: a 150 KB PNG
    may claim 256 megapixels (768 MB as RGB). Pillow's own decompression-bomb guard (a warning, then an
    error, at its global MAX_IMAGE_PIXELS) is answered the same way. ``max_pixels`` defaults to the
    process policy (LABELLOOP_IMAGE_MAX_PIXELS).
    """
    limit = current_policy().max_pixels if max_pixels is None else max_pixels
    shown = source[:200]
    try:
        with Image.open(io.BytesIO(data), formats=_decodable_formats()) as img:
            width, height = img.size
            if width * height > limit:
                raise BadInput(f"image {shown} is {width}x{height} pixels ({width * height:,}), more than the "
                               f"{limit:,} allowed ({PIXELS_SETTING}); refused before decoding")
            return np.asarray(img.convert("RGB"))
    except BadInput:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadInput(f"image {shown} is too large to decode: {exc} ({PIXELS_SETTING})") from exc
    except UnidentifiedImageError as exc:
        raise BadInput(f"cannot decode image from {shown}: not an image in a supported format "
                       f"({', '.join(_decodable_formats())})") from exc
    except Exception as exc:  # Pillow's decoders raise OSError, ValueError, SyntaxError, EOFError, struct.error...
        raise BadInput(f"cannot decode image from {shown}: {exc}") from exc


# --------------------------------------------------------------------------- the fetcher
class ImageFetcher:
    """Callable `ref -> array`, bound to one Label Studio (or none).

    ``policy`` defaults to the process-wide one (:func:`current_policy`: LABELLOOP_IMAGE_*), so the
    existing ``ImageFetcher(url, headers)`` call sites get the guards without a change. ``timeout`` is
    how long one connect or read may stall; ``policy.deadline_seconds`` bounds the whole image.
    ``resolver`` replaces the system resolver (tests). ``session`` is accepted for compatibility and
    ignored: fetches use their own pinned connections (and, like any SSRF guard, no HTTP(S)_PROXY).
    """

    def __init__(
        self,
        label_studio_url: str | None,
        headers: Callable[[], Mapping[str, str]] | None = None,
        timeout: float = 30.0,
        session: object | None = None,
        *,
        policy: ImagePolicy | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.base = label_studio_url.rstrip("/") + "/" if label_studio_url else None
        self._headers = headers
        self.timeout = timeout
        if session is not None:
            warnings.warn("ImageFetcher(session=...) is ignored: image fetches pin the checked address",
                          DeprecationWarning, stacklevel=2)
        self.policy = policy or current_policy()
        self._resolver = resolver or _system_resolver
        self._origin: tuple[str, str, int] | None = None
        with contextlib.suppress(BadInput):  # a malformed LABEL_STUDIO_URL fails at fetch time, as before
            self._origin = _target(self.base).origin if self.base else None

    def __call__(self, ref: str) -> np.ndarray:
        if ref.startswith("data:"):
            return decode_image(self._data_uri(ref), "data URI", self.policy.max_pixels)
        scheme = ref.split(":", 1)[0].lower() if ":" in ref else ""
        if scheme in ("http", "https"):
            return decode_image(self._get(ref, self._is_label_studio(ref)), self._parse(ref).shown,
                                self.policy.max_pixels)
        if ref.startswith("/"):
            if self.base is None:
                raise BadInput(f"image {ref!r} is hosted by Label Studio but LABEL_STUDIO_URL is not set")
            return decode_image(self._get(urljoin(self.base, ref.lstrip("/")), True), ref, self.policy.max_pixels)
        raise BadInput(f"unsupported image reference {ref[:80]!r}: use a data URI, http(s) URL or /data/... path")

    def _is_label_studio(self, url: str) -> bool:
        """Same scheme, host and port as LABEL_STUDIO_URL (default ports spelled or not)."""
        if self._origin is None:
            return False
        try:
            return _target(url).origin == self._origin
        except BadInput:
            return False

    def _parse(self, url: str) -> _Target:
        target = _target(url)
        return replace(target, show_query=True) if target.origin == self._origin else target

    def _data_uri(self, ref: str) -> bytes:
        """The payload, within the byte cap: a data URI is an image too, just one sent inline."""
        header, _, payload = ref.partition(",")
        if ";base64" not in header:
            raise BadInput("image data URI must be base64-encoded")
        cap = self.policy.max_bytes
        if len(payload) > 2 * (cap // 3 + 1) * 4:  # far beyond the cap even with line breaks: don't decode
            raise BadInput(f"image data URI is larger than {cap} bytes ({BYTES_SETTING})")
        try:
            data = base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise BadInput(f"image data URI is not valid base64: {exc}") from exc
        if len(data) > cap:
            raise BadInput(f"image data URI is larger than {cap} bytes ({BYTES_SETTING})")
        return data

    def _get(self, url: str, authenticated: bool) -> bytes:
        """GET one image, following at most ``max_redirects`` redirects ourselves, each hop checked.

        ``authenticated``: the reference is hosted by Label Studio. The auth headers go to a hop only
        when it is on Label Studio's origin too.
        """
        deadline = _Deadline(self.policy.deadline_seconds)
        first = self._parse(url)
        target = first
        for _hop in range(self.policy.max_redirects + 1):
            send_auth = authenticated and target.origin == self._origin
            addresses = self._checked_addresses(target, deadline)
            status, location, body = self._exchange(target, addresses, self._request_headers(target, send_auth),
                                                    deadline)
            if status == 200:
                return body
            if status in _REDIRECTS and location:
                target = self._parse(urljoin(target.url, location.strip()))
                continue
            raise BadInput(f"cannot fetch image {target.shown}: HTTP {status}")
        raise BadInput(f"cannot fetch image {first.shown}: more than {self.policy.max_redirects} redirects")

    def _request_headers(self, target: _Target, send_auth: bool) -> dict[str, str]:
        headers = {"User-Agent": "labelloop-image-fetch", "Accept": "image/*,*/*;q=0.5", "Connection": "close"}
        if target.userinfo is not None:  # credentials written into the URL go to that URL's host only
            user, password = target.userinfo
            headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        if send_auth and self._headers:
            headers.update(self._headers())
        return headers

    def _checked_addresses(self, target: _Target, deadline: _Deadline) -> list[IPAddress]:
        """Resolve once; keep the addresses this hop may connect to (all of them for Label Studio's origin)."""
        try:
            resolved = [ipaddress.ip_address(target.host)]
        except ValueError:
            try:
                names = _within(deadline.remaining(), lambda: self._resolver(target.host, target.port))
                resolved = list(dict.fromkeys(ipaddress.ip_address(str(n)) for n in names))
            except TimeoutError as exc:
                raise deadline.expired(target.shown) from exc
            except (OSError, ValueError) as exc:
                raise BadInput(f"cannot fetch image {target.shown}: cannot resolve {target.host}: {exc}") from exc
        if not resolved:
            raise BadInput(f"cannot fetch image {target.shown}: {target.host} has no address")
        if target.origin == self._origin:
            return resolved
        allowed = [a for a in resolved if forbidden_reason(a) is None or self.policy.allows(target.host, a)]
        if allowed:
            return allowed
        refused = resolved[0]
        why = forbidden_reason(refused) if target.host == str(refused) else f"{refused}: {forbidden_reason(refused)}"
        raise BadInput(f"refusing to fetch image {target.shown}: {target.host} is not a public address ({why}); "
                       f"to let images come from it, add it to {ALLOW_SETTING} (comma-separated hosts, IPs or "
                       "CIDR networks)")

    def _exchange(self, target: _Target, addresses: Sequence[IPAddress], headers: Mapping[str, str],
                  deadline: _Deadline) -> tuple[int, str | None, bytes]:
        """One request on a pinned connection -> (status, Location, body of a 200), within the deadline."""
        if deadline.remaining() <= 0:
            raise deadline.expired(target.shown)
        cls = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
        extra = {"context": _tls_context()} if target.scheme == "https" else {}
        conn = cls(target.host, target.port, addresses, deadline, self.timeout, **extra)
        watchdog = threading.Timer(deadline.remaining(), conn.abort)
        watchdog.daemon = True
        watchdog.start()
        try:
            conn.request("GET", target.path, headers=dict(headers))
            resp = conn.getresponse()
            if resp.status != 200:
                return resp.status, resp.getheader("Location"), b""
            body = self._read_body(resp, target, deadline)
            if conn.aborted:
                raise deadline.expired(target.shown)
            if resp.length:  # the server closed before sending what Content-Length announced
                raise BadInput(f"cannot fetch image {target.shown}: the connection closed mid-image")
            return 200, None, body
        except (OSError, http.client.HTTPException) as exc:
            if conn.aborted or deadline.remaining() <= 0:
                raise deadline.expired(target.shown) from exc
            raise BadInput(f"cannot fetch image {target.shown}: {type(exc).__name__}: {exc}") from exc
        finally:
            watchdog.cancel()
            conn.close()

    def _read_body(self, resp: http.client.HTTPResponse, target: _Target, deadline: _Deadline) -> bytes:
        """The body within the byte cap, read as it arrives (read1: one recv a call, so a drip is seen)."""
        cap = self.policy.max_bytes
        too_big = BadInput(f"image {target.shown} is larger than {cap} bytes ({BYTES_SETTING})")
        declared = (resp.getheader("Content-Length") or "").strip()
        if declared.isdigit() and int(declared) > cap:
            raise too_big
        body = bytearray()
        while chunk := resp.read1(_CHUNK):
            body += chunk
            if len(body) > cap:
                raise too_big
            if deadline.remaining() <= 0:
                raise deadline.expired(target.shown)
        return bytes(body)
