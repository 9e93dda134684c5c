"""vidgraph's runtime: frames, nodes, plugin registry, YAML graphs, executor and CLI.

It knows no model and no codec detail; those live in the plugins.
"""

__version__ = "0.1.0"
