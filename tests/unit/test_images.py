"""Image fetching against hostile task data: SSRF guard (checked after DNS, on every redirect, pinned
against rebinding), the token staying with Label Studio, deadline, byte cap and pixel cap.

Real traffic only ever goes to servers started here on 127.0.0.1; every refused address is refused
before a connection is attempted (``socket.create_connection`` is made to fail the test otherwise).
"""

from __future__ import annotations

import base64
import contextlib
import io
import resource
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from backend.config import Settings
from backend.labelstudio import images
from backend.labelstudio.images import ImageFetcher, ImagePolicy, decode_image, forbidden_reason
from backend.labelstudio.tasks import BadInput

TOKEN = {"Authorization": "Token secret-ls-token"}


# --------------------------------------------------------------------------- helpers
def png(size: tuple[int, int] = (6, 4), colour: tuple[int, int, int] = (0, 0, 255)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of zeros: tens of KB on the wire, width*height*3 bytes once decoded to RGB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = bytes(1 + (width + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


Route = Callable[[BaseHTTPRequestHandler], None]


class LocalServer:
    """A threading HTTP server on 127.0.0.1 that records every request (path, headers)."""

    def __init__(self, routes: dict[str, Route], tls: ssl.SSLContext | None = None) -> None:
        self.routes = routes
        self.seen: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                route = server.routes.get(self.path.split("?", 1)[0])
                if route is None:
                    reply(self, 404, b"nope")
                    return
                with contextlib.suppress(OSError):  # the client may cut a slow answer
                    route(self)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def headers_of(self, path: str) -> list[dict[str, str]]:
        return [h for p, h in self.seen if p.split("?", 1)[0] == path]


def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
          length: bool = True) -> None:
    handler.send_response(status)
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    if length:
        handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.wfile.write(body)


def image_route(body: bytes) -> Route:
    return lambda h: reply(h, 200, body, {"Content-Type": "image/png"})


def redirect_route(location: str, status: int = 302) -> Route:
    return lambda h: reply(h, status, b"", {"Location": location})


@pytest.fixture
def serve() -> Iterator[Callable[[dict[str, Route]], LocalServer]]:
    started: list[LocalServer] = []

    def make(routes: dict[str, Route]) -> LocalServer:
        started.append(LocalServer(routes))
        return started[-1]

    yield make
    for server in started:
        server.close()


@pytest.fixture
def no_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt fails the test: refusals must come before connecting."""

    def refuse(*args: object, **kwargs: object) -> socket.socket:
        raise AssertionError(f"a connection was attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)


def resolver(table: dict[str, list[str]]) -> Callable[[str, int], list[str]]:
    """A fake DNS: the names in ``table``; anything else does not exist."""

    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


def policy(*allow: str, **kwargs: float) -> ImagePolicy:
    return ImagePolicy(allow=allow, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- addresses
@pytest.mark.parametrize("url", [
    "http://127.0.0.1/x.png",
    "http://127.0.0.1:8080/x.png",
    "http://localhost/x.png",  # resolves to loopback (the system resolver, /etc/hosts)
    "http://169.254.169.254/latest/meta-data/x.png",
    "http://10.1.2.3/x.png",
    "http://192.168.1.20/x.png",
    "http://172.16.0.1/x.png",
    "http://100.64.0.1/x.png",  # carrier-grade NAT
    "http://0.0.0.0/x.png",
    "http://2130706433/x.png",  # 127.0.0.1 as one number: caught because resolved addresses are checked
    "http://[::1]/x.png",
    "http://[::ffff:127.0.0.1]/x.png",
    "http://[::ffff:169.254.169.254]/x.png",
    "http://[fe80::1]/x.png",
    "http://[fd00::1]/x.png",
    "http://224.0.0.1/x.png",
    "http://[ff02::1]/x.png",
    "https://[::]/x.png",
])
def test_forbidden_addresses_are_refused_before_connecting(url: str, no_connection: None) -> None:
    fetch = ImageFetcher(None, policy=policy())
    t0 = time.monotonic()
    with pytest.raises(BadInput, match="LABELLOOP_IMAGE_ALLOW") as info:
        fetch(url)
    assert time.monotonic() - t0 < 2
    assert "not a public address" in str(info.value)


def test_names_resolving_to_forbidden_addresses_are_refused(no_connection: None) -> None:
    dns = resolver({"metadata.example": ["169.254.169.254"], "mixed.example": ["10.0.0.7", "fe80::1"]})
    fetch = ImageFetcher(None, policy=policy(), resolver=dns)
    with pytest.raises(BadInput, match=r"metadata\.example is not a public address \(169\.254\.169\.254: link-local"):
        fetch("http://metadata.example/x.png")
    with pytest.raises(BadInput, match="private"):
        fetch("https://mixed.example/x.png")
    with pytest.raises(BadInput, match="cannot resolve"):
        fetch("http://nowhere.example/x.png")


def test_address_classification() -> None:
    import ipaddress

    def reason(text: str) -> str | None:
        return forbidden_reason(ipaddress.ip_address(text))

    assert reason("8.8.8.8") is None and reason("2606:4700:4700::1111") is None
    assert reason("127.0.0.1") == "loopback" and reason("::1") == "loopback"
    assert reason("::ffff:127.0.0.1").startswith("loopback") and reason("::ffff:8.8.8.8") is None
    assert reason("2002:7f00:1::").startswith("loopback")  # 6to4 wrapping 127.0.0.1
    assert reason("64:ff9b::a9fe:a9fe").startswith("link-local")  # NAT64 of 169.254.169.254
    assert reason("239.1.2.3") == "multicast" and reason("ff05::2") == "multicast"
    assert reason("0.0.0.0") == "unspecified"


# --------------------------------------------------------------------------- allowlist
@pytest.mark.parametrize("allow", [("127.0.0.1",), ("127.0.0.0/8",), ("::ffff:127.0.0.1",), ("images.internal",),
                                   ("IMAGES.internal.",)])
def test_the_allowlist_opens_hosts_ips_and_networks(allow: tuple[str, ...], serve) -> None:
    server = serve({"/x.png": image_route(png())})
    dns = resolver({"images.internal": ["127.0.0.1"]})
    fetch = ImageFetcher(None, policy=policy(*allow), resolver=dns)
    arr = fetch(f"http://images.internal:{server.port}/x.png")
    assert arr.shape == (4, 6, 3) and tuple(arr[0, 0]) == (0, 0, 255)
    # Connected to the checked address; the name went only into Host.
    assert server.headers_of("/x.png")[0]["host"] == f"images.internal:{server.port}"


def test_allowlisting_a_name_does_not_open_its_address(serve, no_connection: None) -> None:
    fetch = ImageFetcher(None, policy=policy("images.internal"), resolver=resolver({}))
    with pytest.raises(BadInput, match="LABELLOOP_IMAGE_ALLOW"):
        fetch("http://127.0.0.1:9/x.png")


def record_connections(monkeypatch) -> list[object]:
    """Every address a socket connects to from now on (the connections still go through)."""
    connected: list[object] = []
    real_connect = socket.create_connection

    def record(address: tuple[str, int], *args: object, **kwargs: object) -> socket.socket:
        connected.append(address)
        return real_connect(address, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "create_connection", record)
    return connected


def test_dns_is_asked_once_and_the_checked_address_is_the_one_connected(serve, monkeypatch) -> None:
    """DNS rebinding: a second lookup would answer 169.254.169.254; there is no second lookup."""
    server = serve({"/x.png": image_route(png())})
    answers = iter([["127.0.0.1"], ["169.254.169.254"]])
    lookups: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        lookups.append(host)
        return next(answers)

    connected = record_connections(monkeypatch)
    fetch = ImageFetcher(None, policy=policy("127.0.0.1"), resolver=rebinding)
    assert fetch(f"http://rebind.example:{server.port}/x.png").shape == (4, 6, 3)
    assert lookups == ["rebind.example"] and connected == [("127.0.0.1", server.port)]


def test_a_name_with_a_public_and_a_private_address_only_uses_the_allowed_one(serve, monkeypatch) -> None:
    server = serve({"/x.png": image_route(png())})
    connected = record_connections(monkeypatch)
    dns = resolver({"two.example": ["10.9.9.9", "127.0.0.1"]})
    fetch = ImageFetcher(None, policy=policy("127.0.0.0/8"), resolver=dns)
    assert fetch(f"http://two.example:{server.port}/x.png").shape == (4, 6, 3)
    assert connected == [("127.0.0.1", server.port)]


def test_bad_allowlist_entries_name_the_setting() -> None:
    for entry in ("http://images.internal", "10.0.0.0/33", "images.internal:8080", "a b"):
        with pytest.raises(ValueError, match="LABELLOOP_IMAGE_ALLOW"):
            ImagePolicy(allow=(entry,))


# --------------------------------------------------------------------------- redirects
def test_a_redirect_from_an_allowed_server_to_a_forbidden_address_is_refused(serve) -> None:
    inner = serve({"/secret.png": image_route(png())})  # would answer, if it were asked
    outer = serve({"/loop.png": redirect_route(f"http://127.0.0.1:{inner.port}/secret.png"),
                   "/meta.png": redirect_route("http://169.254.169.254/latest/meta-data/", 307)})
    dns = resolver({"images.internal": ["127.0.0.1"]})
    fetch = ImageFetcher(None, policy=policy("images.internal"), resolver=dns)
    with pytest.raises(BadInput, match=r"127\.0\.0\.1 is not a public address.*LABELLOOP_IMAGE_ALLOW"):
        fetch(f"http://images.internal:{outer.port}/loop.png")
    with pytest.raises(BadInput, match=r"169\.254\.169\.254 is not a public address \(link-local\)"):
        fetch(f"http://images.internal:{outer.port}/meta.png")
    assert inner.seen == [] and len(outer.seen) == 2


def test_allowed_redirects_are_followed_up_to_a_limit(serve) -> None:
    server = serve({})
    server.routes["/x.png"] = image_route(png())
    server.routes["/a"] = redirect_route("/b", 301)
    server.routes["/b"] = redirect_route(f"{server.url}/x.png?sig=abc", 308)
    server.routes["/loop"] = redirect_route("/loop")
    fetch = ImageFetcher(None, policy=policy("127.0.0.1"))
    assert fetch(f"{server.url}/a").shape == (4, 6, 3)
    with pytest.raises(BadInput, match="more than 5 redirects"):
        fetch(f"{server.url}/loop")
    assert len(server.headers_of("/loop")) == 6
    server.routes["/gone"] = lambda h: reply(h, 404, b"not here")
    with pytest.raises(BadInput, match="HTTP 404") as info:
        fetch(f"{server.url}/gone?X-Amz-Signature=s3cr3t")
    assert "s3cr3t" not in str(info.value)  # reasons end up in the iteration history


# --------------------------------------------------------------------------- the token
def test_label_studio_origin_is_always_allowed_and_gets_the_token(serve) -> None:
    ls = serve({"/data/upload/1/x.png": image_route(png())})
    fetch = ImageFetcher(ls.url, lambda: TOKEN, policy=policy())  # nothing allowlisted
    assert fetch("/data/upload/1/x.png").shape == (4, 6, 3)
    assert fetch(f"{ls.url}/data/upload/1/x.png").shape == (4, 6, 3)
    assert [h.get("authorization") for h in ls.headers_of("/data/upload/1/x.png")] == [TOKEN["Authorization"]] * 2
    with pytest.raises(BadInput, match=r"/data/local-files/\?d=missing\.png: HTTP 404"):  # its query names a file
        fetch("/data/local-files/?d=missing.png")
    # Same machine, other port (or another spelling of the host): not Label Studio, so not allowed.
    with pytest.raises(BadInput, match="LABELLOOP_IMAGE_ALLOW"):
        fetch(f"http://localhost:{ls.port}/data/upload/1/x.png")
    with pytest.raises(BadInput, match="LABELLOOP_IMAGE_ALLOW"):
        fetch(f"http://127.0.0.1:{ls.port + 1 if ls.port < 65535 else ls.port - 1}/x.png")


def test_the_token_never_leaves_label_studio_even_across_redirects(serve) -> None:
    other = serve({"/x.png": image_route(png())})
    ls = serve({"/data/upload/1/x.png": image_route(png()),
                "/data/upload/1/away.png": redirect_route(f"http://images.internal:{other.port}/x.png"),
                "/data/upload/1/home.png": redirect_route("/data/upload/1/x.png")})
    other.routes["/back.png"] = redirect_route(f"{ls.url}/data/upload/1/x.png")
    dns = resolver({"images.internal": ["127.0.0.1"]})
    fetch = ImageFetcher(ls.url, lambda: TOKEN, policy=policy("images.internal"), resolver=dns)

    assert fetch("/data/upload/1/away.png").shape == (4, 6, 3)  # Label Studio -> another host
    assert ls.headers_of("/data/upload/1/away.png")[0]["authorization"] == TOKEN["Authorization"]
    assert "authorization" not in other.headers_of("/x.png")[0]

    assert fetch("/data/upload/1/home.png").shape == (4, 6, 3)  # Label Studio -> Label Studio keeps it
    assert ls.headers_of("/data/upload/1/x.png")[-1]["authorization"] == TOKEN["Authorization"]

    # A foreign image that redirects into Label Studio does not make an authenticated request there.
    assert fetch(f"http://images.internal:{other.port}/back.png").shape == (4, 6, 3)
    assert "authorization" not in ls.headers_of("/data/upload/1/x.png")[-1]
    assert all("authorization" not in h for _, h in other.seen)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_https_connects_to_the_checked_address_and_still_verifies_the_name(serve, tmp_path: Path,
                                                                            monkeypatch) -> None:
    """Pinning the address must not weaken TLS: the certificate is checked against the URL's host name."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=images.internal", "-addext", "subjectAltName=DNS:images.internal"],
                   check=True, capture_output=True)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    server = LocalServer({"/x.png": image_route(png())}, tls=server_tls)
    try:
        monkeypatch.setattr(images, "_tls", ssl.create_default_context(cafile=str(cert)))
        dns = resolver({"images.internal": ["127.0.0.1"], "other.internal": ["127.0.0.1"]})
        fetch = ImageFetcher(None, policy=policy("127.0.0.1"), resolver=dns)
        assert fetch(f"https://images.internal:{server.port}/x.png").shape == (4, 6, 3)
        with pytest.raises(BadInput, match="CERTIFICATE_VERIFY_FAILED") as info:
            fetch(f"https://other.internal:{server.port}/x.png")
        assert "other.internal" in str(info.value)
    finally:
        server.close()


# --------------------------------------------------------------------------- deadline, bytes
def drip_body(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", "10000")
    handler.end_headers()
    for _ in range(300):
        handler.wfile.write(b"x")
        handler.wfile.flush()
        time.sleep(0.05)


def drip_headers(handler: BaseHTTPRequestHandler) -> None:
    handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    for _ in range(300):
        handler.wfile.write(b"a")
        handler.wfile.flush()
        time.sleep(0.05)


@pytest.mark.parametrize("route", [drip_body, drip_headers])
def test_a_dripping_server_is_cut_at_the_deadline(route: Route, serve) -> None:
    server = serve({"/drip.png": route})
    fetch = ImageFetcher(None, timeout=30, policy=policy("127.0.0.1", deadline_seconds=1.0))
    t0 = time.monotonic()
    with pytest.raises(BadInput, match=r"did not arrive within 1 s \(LABELLOOP_IMAGE_DEADLINE_SECONDS\)"):
        fetch(f"{server.url}/drip.png")
    assert 0.9 < time.monotonic() - t0 < 2.5


def test_a_slow_resolver_counts_against_the_deadline() -> None:
    def slow(host: str, port: int) -> list[str]:
        time.sleep(3)
        return ["127.0.0.1"]

    fetch = ImageFetcher(None, policy=policy("127.0.0.1", deadline_seconds=0.5), resolver=slow)
    t0 = time.monotonic()
    with pytest.raises(BadInput, match="within 0.5 s"):
        fetch("http://slow.example/x.png")
    assert time.monotonic() - t0 < 1.5


def test_the_byte_cap(serve) -> None:
    big = png((200, 200)) + bytes(5000)
    server = serve({"/declared.png": image_route(big),
                    "/undeclared.png": lambda h: reply(h, 200, big, length=False),
                    "/short.png": lambda h: reply(h, 200, png()[:30], {"Content-Length": "500"}, length=False)})
    fetch = ImageFetcher(None, policy=policy("127.0.0.1", max_bytes=4000))
    for path in ("/declared.png", "/undeclared.png"):
        with pytest.raises(BadInput, match=r"larger than 4000 bytes \(LABELLOOP_IMAGE_MAX_BYTES\)"):
            fetch(server.url + path)
    with pytest.raises(BadInput, match="closed mid-image"):
        fetch(server.url + "/short.png")
    uri = "data:image/png;base64," + base64.b64encode(big).decode()
    with pytest.raises(BadInput, match="LABELLOOP_IMAGE_MAX_BYTES"):
        fetch(uri)
    with pytest.raises(BadInput, match="LABELLOOP_IMAGE_MAX_BYTES"):
        fetch("data:image/png;base64," + "A" * 100_000)  # refused without decoding
    assert ImageFetcher(None, policy=policy(max_bytes=len(big)))(uri).shape == (200, 200, 3)


# --------------------------------------------------------------------------- pixels
def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("size", [(20000, 20000), (8000, 8000)])
def test_a_pixel_bomb_is_refused_before_decoding(size: tuple[int, int], monkeypatch) -> None:
    """20000x20000 trips Pillow's own bomb guard (an error, not a 500); 8000x8000 our 40-megapixel cap."""
    bomb = png_bomb(*size)
    assert len(bomb) < 200_000  # ~1.2 GB / 190 MB as RGB
    decoded: list[object] = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self) or real_load(self))
    fetch = ImageFetcher(None, policy=policy(max_pixels=40_000_000))
    uri = "data:image/png;base64," + base64.b64encode(bomb).decode()
    before = _peak_rss_mb()
    t0 = time.monotonic()
    with pytest.raises(BadInput, match="LABELLOOP_IMAGE_MAX_PIXELS") as info:
        fetch(uri)
    assert time.monotonic() - t0 < 2.0  # generous for a busy machine: what proves it is the next line
    assert decoded == [] and _peak_rss_mb() - before < 100
    assert f"{size[0]}x{size[1]}" in str(info.value) or "decompression bomb" in str(info.value)


def test_the_pixel_cap_is_a_setting_and_pillows_bomb_warning_is_bad_input() -> None:
    ok = png((10, 10))
    assert decode_image(ok, "ok", max_pixels=100).shape == (10, 10, 3)
    with pytest.raises(BadInput, match=r"10x10 pixels \(100\), more than the 99 allowed \(LABELLOOP_IMAGE_MAX_PI"):
        decode_image(ok, "ok", max_pixels=99)
    bomb = png_bomb(10000, 10000)  # between Pillow's warning (89 MP) and error (179 MP) thresholds
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(BadInput, match="too large to decode"):
            decode_image(bomb, "bomb", max_pixels=10**9)


def test_undecodable_and_ghostscript_formats_are_bad_input() -> None:
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(BadInput, match="not an image in a supported format"):
        decode_image(eps, "eps")
    with pytest.raises(BadInput, match="cannot decode"):
        decode_image(png()[:40], "truncated")


# --------------------------------------------------------------------------- settings
def test_settings_and_the_process_policy(monkeypatch) -> None:
    settings = Settings.from_env({"LABELLOOP_IMAGE_ALLOW": " 127.0.0.1, 10.0.0.0/8 ,images.internal,",
                                  "LABELLOOP_IMAGE_DEADLINE_SECONDS": "2.5", "LABELLOOP_IMAGE_MAX_BYTES": "1000",
                                  "LABELLOOP_IMAGE_MAX_PIXELS": "500"})
    assert settings.image_allow == ["127.0.0.1", "10.0.0.0/8", "images.internal"]
    found = ImagePolicy.from_settings(settings)
    assert (found.deadline_seconds, found.max_bytes, found.max_pixels) == (2.5, 1000, 500)
    defaults = Settings()
    assert (defaults.image_allow, defaults.image_deadline_seconds, defaults.image_max_pixels) == ([], 15.0, 40_000_000)
    with pytest.raises(ValueError, match="LABELLOOP_IMAGE_ALLOW"):
        Settings.from_env({"LABELLOOP_IMAGE_ALLOW": "http://images.internal/"})

    monkeypatch.setenv("LABELLOOP_IMAGE_ALLOW", "192.168.0.0/16")
    monkeypatch.setenv("LABELLOOP_IMAGE_MAX_PIXELS", "1234")
    images.configure(None)
    try:
        fetch = ImageFetcher(None)  # the call sites' form: the process policy, from the environment
        assert fetch.policy.max_pixels == 1234
        import ipaddress

        assert fetch.policy.allows("nas.local", ipaddress.ip_address("192.168.1.2"))
        images.configure(found)
        assert ImageFetcher(None).policy is found
    finally:
        images.configure(None)


def test_data_uri_still_decodes() -> None:
    uri = "data:image/png;base64," + base64.b64encode(png()).decode()
    arr = ImageFetcher(None, policy=policy())(uri)
    assert arr.dtype == np.uint8 and arr.shape == (4, 6, 3)
