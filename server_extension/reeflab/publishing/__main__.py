"""`python -m reeflab.publishing --state-dir DIR`: run the catalogue service."""

from .app import main

main()
