"""graft's own layers, where their behaviour is not covered by the modules that use them."""

from __future__ import annotations

import numpy as np


def test_resize_layer_keeps_batch_normalization_in_inference_mode():
    # keras.layers.Resizing defaults to training=True and Keras hands that to the layers after
    # it when a model is called without `training`: BatchNormalization then used batch
    # statistics, and the TFLite conversion disagreed with Keras by up to 2.8.
    import keras

    from graft._engines import TFLiteEngine, tflite_file
    from graft.models.layers import ResizeImage

    keras.utils.set_random_seed(0)
    inputs = keras.Input((24, 24, 3))
    x = ResizeImage((16, 16))(inputs)
    x = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3)(x))
    model = keras.Model(inputs, x)
    batch = np.random.default_rng(0).random((4, 24, 24, 3)).astype(np.float32)
    direct = np.asarray(model(batch))
    np.testing.assert_allclose(direct, model.predict(batch, verbose=0), atol=1e-6)
    lite = TFLiteEngine(tflite_file(model, "resize-bn"))(batch)
    np.testing.assert_allclose(lite, direct, atol=1e-5)
