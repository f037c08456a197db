"""``deformgan editor``: drag the target skeleton in a browser and watch the generated person follow.

- :mod:`.engine`: the generator split into its source-side work (once per photo) and its per-pose work;
  the explanatory overlays (target part masks, the source warped part by part);
- :mod:`.poses`: keypoint checks, our annotation CSV row and OpenPose JSON in and out;
- :mod:`.session`: what the page asks for (photos framed and their keypoints estimated, renders, videos,
  pose files), without the web layer;
- :mod:`.app`: the local web server (Starlette + uvicorn, the ``deformgan[editor]`` extra) and its page
  (``static/``: plain HTML, CSS and JavaScript, no build step, nothing fetched from outside).
"""

from __future__ import annotations

from deformgan.editor.app import DEFAULT_HOST, DEFAULT_PORT, create_app, default_checkpoint, run_editor
from deformgan.editor.engine import EditorEngine, Rendering, Source
from deformgan.editor.session import EditorBackend

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "EditorBackend",
    "EditorEngine",
    "Rendering",
    "Source",
    "create_app",
    "default_checkpoint",
    "run_editor",
]
