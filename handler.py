"""RunPod serverless entry point: ``python handler.py`` starts the worker loop.

On RunPod it takes jobs from the platform; run locally with a ``test_input.json`` beside it,
the runpod SDK runs that job once and prints the result (``--rp_serve_api`` works too).
"""

from sdworker.runpod.adapter import start

if __name__ == "__main__":
    start()
