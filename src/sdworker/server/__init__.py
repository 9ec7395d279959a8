"""The local endpoint: RunPod's serverless REST API in one process, with real workers."""
