"""sdworker: a RunPod serverless worker for Stable Diffusion."""

__version__ = "0.1.0"
