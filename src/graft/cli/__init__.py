"""The ``graft`` command line. Nothing here imports TensorFlow at module level."""
