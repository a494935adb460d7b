"""Notebook jobs: papermill runs of a user's notebook with parameters, detached from the browser."""
