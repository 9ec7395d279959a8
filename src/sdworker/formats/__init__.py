"""Other Stable Diffusion services' request formats, spoken over the native jobs.

One object per format (:mod:`.a1111`, :mod:`.salad`, :mod:`.stochastic`, :mod:`.deepinfra`,
:mod:`.openai`) decodes its requests into native inputs and encodes results and failures in
its own shapes; :mod:`.base` holds the contract. Every format's routes hand their requests to
one route pipeline (:mod:`.pipeline`); the local endpoint mounts them
(:func:`.registry.routers`) and the RunPod handler reads the same formats inside a job's
``input`` (:mod:`sdworker.runpod.envelopes`). This package imports ``sdworker.core`` only: the
server hands it the queue and the webhook sender through :class:`~.base.FormatContext`.
"""
