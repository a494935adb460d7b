"""The platform's catalogue service (`python -m reeflab.publishing`, the hub-managed service `reeflab-catalogue`):
the index users publish checked modules to, and the platform's own check reports of the installed modules.

It runs under the platform's account, apart from every user: its files are written by it alone, and who publishes
is who the hub says holds the token, so a user can change or remove only their own publications."""
