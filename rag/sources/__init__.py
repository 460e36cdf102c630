"""Sources yield documents: code repositories and Confluence sites, each a named instance.

`registry.py` owns the configured instances (from the sources file or the v1 variables);
`repository.py` and `confluence.py` are the two kinds' Source implementations.
"""
