"""Generation parameters as AUTOMATIC1111 writes them ("infotext").

The writer lives in :mod:`sdworker.core.media`, so the A1111 request format (which imports
only ``core``) and the PNG ``parameters`` chunk written here share one implementation.
"""

from __future__ import annotations

from sdworker.core.media import infotext

__all__ = ["infotext"]
