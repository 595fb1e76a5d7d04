"""The pieces of ``startup.py``, ``reload.py`` and ``memory.py``: what a whole mesh costs.

- ``control``: the control API's status over its Unix socket (standard library
  only, so polling costs no interpreter start), and "every instance healthy,
  every sidecar SYNCED";
- ``meshes``: the example shop copied to a temporary directory, and generated
  meshes of tiny apps with routes that a reload can edit;
- ``running``: ``meshkit up`` as a server owned by ``hopbench.procs.Servers``,
  timed to all-ready, its processes (apps excluded) and their PSS/RSS;
- ``bytecode``: the Python environment of every process, compiling from source
  (the default here) or from a pre-compiled cache (``--bytecode``);
- ``figures``: a figure's samples, median, target and verdict, printed and
  written as JSON.
"""
