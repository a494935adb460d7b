"""`python -m reeflab.oscar_engine --port 8095 --state-dir DIR`: run the engine."""

from .app import main

main()
