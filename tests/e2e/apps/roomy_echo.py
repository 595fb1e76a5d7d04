"""``versioned_echo`` with room for more than the 100 request headers http.server allows,
so that a test can see every header the mesh forwards (the app's own limit aside)."""

from __future__ import annotations

import http.client
import runpy
from pathlib import Path

http.client._MAXHEADERS = 1000  # type: ignore[attr-defined]
runpy.run_path(str(Path(__file__).with_name("versioned_echo.py")), run_name="__main__")
