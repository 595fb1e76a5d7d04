"""The pieces of ``benchmarks/hop.py``: one module per concern.

- ``procs``: starting servers in their own process groups, stopping them, and
  reading CPU time and RSS of a process tree from ``/proc``;
- ``certs``: a throwaway CA and two P-256 leaf certificates;
- ``nginx``: configurations for the backend and the nginx mTLS pair;
- ``meshkit_hop``: the same hop through ``meshkit up``;
- ``load``: driving a URL with ``wrk`` and ``h2load`` and parsing what they print;
- ``report``: medians, the table, the targets of the issue, the JSON file.
"""
