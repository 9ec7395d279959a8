"""ComfyUI workflows, run as native jobs: worker-comfyui's job (``{"workflow", "images"}``,
in a RunPod job's ``input`` and on ``POST /comfyui/runsync``) and ComfyUI's own HTTP API
(``/prompt``, ``/history``, ``/view``, ``/upload/image``, ``/ws``...).

A workflow in ComfyUI's API format is interpreted, not run: :mod:`.interpret` follows each
output node's links back to its loaders, reads every node on the way (:mod:`.nodes`,
:mod:`.evaluate`) and makes one native input per sampler the outputs save (:mod:`.plan`).
A node sdworker does not read is refused by id, class and input, before anything runs.

Modules: :mod:`.graph` (reading the graph, bounded), :mod:`.nodes` (the node classes),
:mod:`.values` (what flows on links), :mod:`.evaluate` (each node's meaning),
:mod:`.samplers` and :mod:`.components` (ComfyUI's names to ours), :mod:`.images` (input
images scaled and masked), :mod:`.plan` (a sample to a native input), :mod:`.files` and
:mod:`.results` (the names of saved images), :mod:`.worker` (worker-comfyui's format),
:mod:`.api`, :mod:`.uploads`, :mod:`.objectinfo`, :mod:`.ws` and :mod:`.routes` (ComfyUI's
HTTP API). Only :mod:`.routes`, :mod:`.api` and :mod:`.ws` import the web framework; the
worker reads :mod:`.worker` without it.
"""
