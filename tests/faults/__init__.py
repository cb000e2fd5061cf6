"""Fault tests (issue 8): the whole mesh under `samhandling up`, a steady stream of writes retried as a
vendor would, and one fault at a time — a service killed, the database restarted, the database made
slow — after which nothing acknowledged is lost or duplicated, the access log is complete and intact,
change-feed watchers resume without gaps or repeats, and every service is SERVING again by itself.

- `mesh` starts and inspects the mesh (processes, health, the database as superuser, tokens);
- `load` is the load client, the feed watchers and the health timeline;
- `checks` compares what the client saw with what the mesh stored, and computes the figures;
- `test_faults` injects the faults.
"""
