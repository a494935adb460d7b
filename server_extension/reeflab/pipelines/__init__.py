"""Composed workflows: Elyra pipelines of ReefLab modules and notebooks, run in the background or exported."""
