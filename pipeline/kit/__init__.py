"""The kit plugin authors use: batching, weights, image conversions, training helpers,
and test helpers."""
