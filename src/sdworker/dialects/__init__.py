"""Translations between other Stable Diffusion services' request formats and the native input."""
