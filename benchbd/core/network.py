"""Whether the network is there: a leaf module, so that the data sources (Hugging Face
datasets) and pretrained weights (open_clip downloads) can ask without importing each other.

Asked before a download, so that a machine without network fails at once with a message that
says how to provide the file, instead of after a library's minute of retries.
"""

from __future__ import annotations

import os
import socket


def no_network(host: str) -> bool:
    """True when HF_HUB_OFFLINE is set or `host` cannot be reached within 3 seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return True
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError:
        return True
    return False
