"""Batch feature extraction and prediction on a Ray cluster (``graft features``,
``graft predict --engine ray``).

The driver (which may load TensorFlow) converts the network to TFLite once and ships its bytes;
Ray Data actors (``workers.TFLiteWorker``) decode images with Pillow and run the LiteRT
interpreter, without importing TensorFlow. Features land in the driver's feature cache under
the keys ``graft train`` looks up, or in a Parquet file.
"""
