"""The libraries' notices that a worker's log should not carry, silenced once per process.

A worker's output is a log: a clean job should leave no WARNING in it that its user did not
cause, and no progress bars (tqdm's carriage returns turn into one garbled line per bar in a
log). Each notice dropped here says nothing the worker does not already handle:

- transformers' "``CLIPImageProcessor`` requires torchvision (not installed); falling back to
  ``CLIPImageProcessorPil``" (and the same for SigLIP): diffusers imports these processors with
  its pipelines, and the PIL ones are what sdworker means to use (torchvision is not a
  dependency);
- diffusers' "modules that should be kept in float32: []": ``from_pipe`` casts the shared
  modules to the dtype they already have on every job, and an empty list warns of nothing;
- the "Loading pipeline components" and "Loading weights" bars of diffusers and transformers:
  the worker logs each model's load on one line instead.

:func:`install` runs before diffusers' modules are imported, since some notices fire on import.
"""

from __future__ import annotations

import logging

#: (logger, a part of the message): the notices dropped
NOTICES = (
    ("transformers.utils.import_utils", "requires torchvision (not installed); falling back to"),
    ("diffusers.models.modeling_utils", "should be kept in float32: []"),
)


class DropNotice(logging.Filter):
    """Drops the records of one logger whose message contains ``part``."""

    def __init__(self, part: str) -> None:
        super().__init__()
        self.part = part

    def filter(self, record: logging.LogRecord) -> bool:
        return self.part not in record.getMessage()


def install() -> None:
    """Silence :data:`NOTICES` and the libraries' load bars (idempotent)."""
    for name, part in NOTICES:
        target = logging.getLogger(name)
        if not any(isinstance(f, DropNotice) and f.part == part for f in target.filters):
            target.addFilter(DropNotice(part))
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
