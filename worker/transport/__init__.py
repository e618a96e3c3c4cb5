"""How a leader and its ranks reach each other: the join plane (Redis mailboxes), then one
link per rank (TCP, and shared memory on one host) carrying framed step messages."""
