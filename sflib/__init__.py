"""sparse-feedback: acquire ratings and rankings feedback, measure their (in)consistency,
train reward models on each, select best-of-n outputs, and evaluate under both protocols.

One module per pipeline stage or concern; see README.md for the map.
"""
__version__ = "0.1.0"
