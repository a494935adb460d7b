"""The run-lifecycle core every long-running thing shares (deployments, notebook jobs, pipeline runs).

A kind of run is three pieces:
- a record (`RunRecord` subclass, models.py): what the platform keeps about one run, saved in its own
  private folder by a `RecordStore` and read back after a restart of the user's server;
- a backend (`RunBackend` subclass, backend.py): starts it somewhere (a local process, a Kubernetes
  object), tells where it stands, stops it, reads its log;
- a service (`RunService` subclass, service.py): the user's runs of that kind, with list/get/logs/delete,
  a public `stop_all`, and a watcher that calls the subclass's `check(record)` on every active run until
  none is left (re-attached after a restart by `ensure_watching`).
A new kind adds one record model, one service subclass, one backend and one handler file.
"""
