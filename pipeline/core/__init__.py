"""The core: what flows (frames, packets, stream markers), nodes, edges, graphs, the
executor, devices and metrics. Knows no plugin, no codec and no model."""
