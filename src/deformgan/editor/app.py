"""The editor's web layer: a Starlette app serving one static page and a small JSON API, run by uvicorn.

Offline and local by construction: the page and its script are package data (no CDN, no build step, no
telemetry: Starlette and uvicorn make no requests of their own); every response carries a
Content-Security-Policy that lets the page talk to this server only; the server binds 127.0.0.1 unless told
otherwise and then answers only requests addressed to a loopback name (DNS-rebinding guard); API calls
need a custom header, which a page of another site cannot send without a CORS preflight this server never
grants; uploads are capped (:data:`MAX_UPLOAD_MB`). There are no documentation, health or metrics
endpoints.

API (all POST bodies JSON unless an upload; every error is ``{"error": "<one line>"}`` with status 4xx):

- ``GET /api/info`` -> frame size, joints, skeleton, colours, model and pose-model status;
- ``POST /api/photo?framing=person|whole&name=F`` (body: the file) -> ``{id, image, keypoints, note}``;
- ``POST /api/photo-pose?framing=...&name=F`` (body: the file) -> ``{image, keypoints, note}`` (a target);
- ``POST /api/render`` ``{photo, source, target, overlays, final}`` -> ``{image, masks, warped, parts,
  timings}`` (PNG data URLs; timings in ms);
- ``POST /api/video?name=F`` (body: the file) -> ``{id, frames, fps}``; ``POST /api/video-frame``
  ``{video, index}`` -> ``{image, keypoints, note}``;
- ``POST /api/pose-import?name=F`` (body: OpenPose JSON or annotation CSV) -> ``{poses: [{name,
  keypoints}]}``; ``POST /api/pose-export`` ``{keypoints, format, name}`` -> ``{filename, text}``.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import json
import os
import socket
import sys
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from deformgan.checkpoint import SHIPPED_MODEL, resolve_shipped
from deformgan.editor.session import EditorBackend
from deformgan.errors import InputError

#: Largest upload accepted (photos, videos, pose files), in MiB.
MAX_UPLOAD_MB = 64
#: The header every API POST must carry (any value): cross-site pages cannot add it without a preflight.
API_HEADER = "x-deformgan-editor"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def default_checkpoint() -> Path:
    """The model ``deformgan editor`` opens without ``--checkpoint``: the shipped synthetic-people model."""
    try:
        return resolve_shipped(SHIPPED_MODEL)
    except InputError as error:  # an install without the package data (e.g. a trimmed wheel)
        message = f"deformgan editor: {error}; pass --checkpoint RUN (a run or model folder)"
        raise InputError(message) from None


def png_data_url(pixels: np.ndarray) -> str:
    """uint8 (H, W, 3) RGB -> ``data:image/png;base64,...`` (fast zlib level: small frames, low latency)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


async def read_capped(chunks, limit: int) -> bytes | None:
    """Join an async iterator of byte chunks (a request body without a declared length) -> the bytes, or
    None as soon as more than ``limit`` bytes have arrived (the rest is not read)."""
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


def is_loopback(host: str) -> bool:
    """True for localhost and the loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create_app(backend: EditorBackend, max_upload_mb: float = MAX_UPLOAD_MB, allowed_hosts=LOOPBACK_NAMES):
    """The Starlette application for ``backend``. allowed_hosts: Host header names answered (``["*"]``:
    any, for a server deliberately opened to the network)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    limit = int(max_upload_mb * 1024 * 1024)
    static = resources.files("deformgan.editor") / "static"

    class Refused(Exception):
        def __init__(self, status: int, message: str):
            super().__init__(message)
            self.status, self.message = status, message

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise Refused(
                413, f"upload too large ({int(declared) / 2**20:.1f} MiB > {max_upload_mb:g} MiB limit)"
            )
        data = await read_capped(request.stream(), limit)
        if data is None:
            raise Refused(413, f"upload too large (> {max_upload_mb:g} MiB limit)")
        return data

    async def payload(request: Request) -> dict:
        try:
            value = json.loads(await body(request))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise Refused(400, "request body is not valid JSON") from None
        if not isinstance(value, dict):
            raise Refused(400, "request body must be a JSON object")
        return value

    def api(handler):
        """An API endpoint: custom-header check, InputError -> 400 with its one line."""

        async def endpoint(request: Request):
            if request.method == "POST" and API_HEADER not in request.headers:
                return error(403, f"API requests need the {API_HEADER} header (sent by the editor's page)")
            try:
                return JSONResponse(await handler(request))
            except Refused as refused:
                return error(refused.status, refused.message)
            except InputError as bad:
                return error(400, str(bad).splitlines()[0] if str(bad) else "bad input")

        return endpoint

    def framed_json(framed) -> dict:
        return {
            "image": png_data_url(framed.image),
            "keypoints": framed.keypoints.tolist(),
            "note": framed.note,
        }

    async def info(request: Request) -> dict:
        return backend.info() | {"max_upload_mb": max_upload_mb}

    async def photo(request: Request) -> dict:
        data = await body(request)
        params = request.query_params
        photo_id, framed = await run_in_threadpool(
            backend.load_photo, data, params.get("name", ""), params.get("framing", "person")
        )
        return {"id": photo_id} | framed_json(framed)

    async def photo_pose(request: Request) -> dict:
        data = await body(request)
        params = request.query_params
        framed = await run_in_threadpool(
            backend.photo_pose, data, params.get("name", ""), params.get("framing", "person")
        )
        return framed_json(framed)

    async def render(request: Request) -> dict:
        value = await payload(request)
        overlays = bool(value.get("overlays", False))
        result = await run_in_threadpool(
            backend.render,
            str(value.get("photo", "")),
            value.get("source"),
            value.get("target"),
            overlays,
            bool(value.get("final", True)),
        )
        out = {"image": png_data_url(result.image), "timings": result.timings}
        if overlays:
            out["masks"] = None if result.masks is None else png_data_url(result.masks)
            out["warped"] = None if result.warped is None else png_data_url(result.warped)
            out["parts"] = None if result.parts is None else [png_data_url(p) for p in result.parts]
        return out

    async def video(request: Request) -> dict:
        data = await body(request)
        video_id, frames, fps = await run_in_threadpool(
            backend.load_video, data, request.query_params.get("name", "")
        )
        return {"id": video_id, "frames": frames, "fps": fps}

    async def video_frame(request: Request) -> dict:
        value = await payload(request)
        framed = await run_in_threadpool(
            backend.video_frame,
            str(value.get("video", "")),
            value.get("index"),
            value.get("framing", "person"),
        )
        return framed_json(framed)

    async def pose_import(request: Request) -> dict:
        data = await body(request)
        poses = await run_in_threadpool(backend.import_poses, data, request.query_params.get("name", ""))
        return {"poses": [{"name": name, "keypoints": kp.tolist()} for name, kp in poses]}

    async def pose_export(request: Request) -> dict:
        value = await payload(request)
        filename, text = backend.export_pose(
            value.get("keypoints"), str(value.get("format", "")), str(value.get("name", "pose"))
        )
        return {"filename": filename, "text": text}

    async def index(request: Request) -> Response:
        return FileResponse(str(static / "index.html"), media_type="text/html")

    async def headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    routes = [
        Route("/", index),
        Route("/api/info", api(info), methods=["GET"]),
        Route("/api/photo", api(photo), methods=["POST"]),
        Route("/api/photo-pose", api(photo_pose), methods=["POST"]),
        Route("/api/render", api(render), methods=["POST"]),
        Route("/api/video", api(video), methods=["POST"]),
        Route("/api/video-frame", api(video_frame), methods=["POST"]),
        Route("/api/pose-import", api(pose_import), methods=["POST"]),
        Route("/api/pose-export", api(pose_export), methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(static)), name="static"),
    ]
    middleware = [
        Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)),
        Middleware(BaseHTTPMiddleware, dispatch=headers),
    ]
    return Starlette(routes=routes, middleware=middleware)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free one. InputError when it is taken."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as err:
        sock.close()
        raise InputError(
            f"cannot listen on {host}:{port} ({err.strerror or err}); pass another --port"
        ) from None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def make_server(app):
    """A uvicorn server for ``app`` (run it with ``.run(sockets=[bind(...)])``): quiet (warnings only, no
    access log), no Server/Date headers."""
    import uvicorn

    config = uvicorn.Config(
        app, log_level="warning", access_log=False, server_header=False, date_header=False, lifespan="off"
    )
    return uvicorn.Server(config)


def require_extra() -> None:
    """InputError naming the install extra when the web stack is absent."""
    missing = []
    for module in ("starlette", "uvicorn"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise InputError(f"deformgan editor needs {' and '.join(missing)}: pip install 'deformgan[editor]'")


def run_editor(
    checkpoint: str | os.PathLike | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    device: str = "cpu",
    threads: int | None = None,
    preview: str = "fp32",
    pose_model: str | os.PathLike | None = None,
    max_upload_mb: float = MAX_UPLOAD_MB,
) -> None:
    """``deformgan editor``: load the model, serve the editor on http://host:port/ until Ctrl-C.

    checkpoint: run folder or ``ckpt-*`` folder (None: :func:`default_checkpoint`). host: the address to
    bind (127.0.0.1 = this machine only; another address opens the editor to the network and the
    Host-name guard is off). threads: torch CPU threads (None: torch's default). preview: precision of the
    updates while dragging ("fp32" or "bf16", see :class:`~deformgan.editor.engine.EditorEngine`).
    pose_model: explicit BlazePose model file (default: the weights cache).
    """
    from deformgan.editor.engine import EditorEngine
    from deformgan.runtime import resolve_device, set_threads

    require_extra()
    if max_upload_mb <= 0:
        raise InputError(f"max_upload_mb: expected > 0, got {max_upload_mb}")
    set_threads(threads)
    path = Path(checkpoint) if checkpoint is not None else default_checkpoint()
    engine = EditorEngine.from_checkpoint(path, resolve_device(device), preview=preview)
    sock = bind(host, port)
    local = is_loopback(host)
    with tempfile.TemporaryDirectory(prefix="deformgan-editor-") as work:
        backend = EditorBackend(engine, work, pose_model=pose_model, name=path.name)
        app = create_app(backend, max_upload_mb, LOOPBACK_NAMES if local else ["*"])
        actual = sock.getsockname()[1]
        shown = f"[{host.strip('[]')}]" if ":" in host else host
        height, width = engine.image_size
        print(
            f"deformgan editor: http://{shown}:{actual}/  (model {path}, {height}x{width}, "
            f"{engine.warp_skip} skips, width {engine.config.generator.width:g}; Ctrl-C to stop)",
            flush=True,
        )
        if not local:
            print("warning: listening on a non-loopback address: anyone who can reach it can use the editor")
        if backend.pose_message:
            print(f"note: {backend.pose_message}", file=sys.stderr, flush=True)
        try:
            make_server(app).run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it shut down on
            pass
        finally:
            sock.close()
        print("deformgan editor: stopped", flush=True)
