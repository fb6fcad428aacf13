"""Data sets: the toy 2-D sets (``toy``)."""
