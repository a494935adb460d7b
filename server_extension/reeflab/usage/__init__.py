"""The usage service (`python -m reeflab.usage`, hub service `reeflab-usage`): per-user usage over time for admins."""
