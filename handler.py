"""RunPod's conventional entry point: ``python handler.py`` is ``sdworker worker``."""

from sdworker.worker import main

if __name__ == "__main__":
    main()
