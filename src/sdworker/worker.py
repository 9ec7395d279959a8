"""The RunPod worker: ``sdworker worker`` and ``python -m sdworker.worker`` start the runpod SDK's
worker loop with sdworker's handler (the root ``handler.py`` is RunPod's conventional shim to it).

With no RunPod variables set, the SDK runs ``test_input.json`` from the current folder once and
prints the result; ``--rp_serve_api`` starts the SDK's own test server.
"""

from __future__ import annotations

from sdworker.runpod.adapter import start


def main() -> None:
    start()


if __name__ == "__main__":
    main()
