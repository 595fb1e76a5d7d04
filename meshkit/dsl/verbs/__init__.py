"""The Meshfile's verbs, as a user writes them: ``Mesh`` and its methods
(``mesh``), health checks and the restart policy (``health``), routes
(``traffic``, ``matchers``) and destination policies (``resilience``).

Every verb records the user's line that called it, reads its arguments with
the one ``ArgumentReader`` (a mistake becomes a ``Problem`` there, never an
exception) and returns a ``Declared`` value: the spec it built and those problems.
"""
