"""Nodes that change the picture from what other nodes found: overlays, blurring."""
