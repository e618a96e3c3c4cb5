"""Celery workers: the app, its tasks, and the code that runs a job on the core.

Where each question is answered:

- ``app``, ``tasks``, ``embedded``: the Celery app, its two thin tasks, the in-process worker.
- ``leader``: a leader's task body, from its claim to its outcome (``LeaderRun``).
- ``claim``: how a delivery takes a job (the lease, the plan) and prepares its trainer.
- ``joining``: how many ranks a leader asks for, and how they join and link.
- ``exchange``: the leader's side of a step with its ranks (``RemoteRanks``).
- ``rank``: a rank's task body, its loop and its compute.
- ``transport/``: links, shared slots, message framing, the join plane (Redis mailboxes).
- ``records``, ``writer``: what a leader writes, and the thread that writes it.
- ``loading``: what a worker reads before training (spec, dataset, initial weights).
- ``planning``: the cost model that sizes a job. ``presence``: which workers are idle.
- ``dispatch``: sending the workers' own tasks by name. ``outcome``: what a task returns.
- ``watchdog``, ``shutdown``: stalled jobs, and a worker asked to stop.
- ``telemetry``: the step and round histograms. ``redis_client``: the process's Redis client.
"""
