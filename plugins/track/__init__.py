"""Multi-object tracking: stable ids across frames for any detector's boxes."""
