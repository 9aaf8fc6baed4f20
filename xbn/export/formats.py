"""LiteRT and ONNX exports: the model with its preprocessing and softmax, verified."""

import keras
import numpy as np

from xbn.export.verify import ExportError, compare, has_logits, image_size, probabilities


class _Preprocess(keras.layers.Layer):
    """The model's preprocessing as a layer (for the LiteRT/ONNX wrappers)."""

    def __init__(self, mode, **kwargs):
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, images):
        from xbn.models.preprocessing import preprocess_images

        return preprocess_images(images, self.mode)


def end_to_end(model, preprocessing):
    """RGB 0..255 in, probabilities out: the model wrapped for LiteRT/ONNX."""
    size = image_size(model)
    inputs = keras.Input((size, size, 3), name="images")
    outputs = model(_Preprocess(preprocessing)(inputs))
    if has_logits(model):
        outputs = keras.layers.Softmax(name="probabilities")(outputs)
    return keras.Model(inputs, outputs, name=f"{model.name}_serving")


def write_litert(model, preprocessing, directory, images, expected, source, log, limit):
    path = directory / "model.tflite"
    try:
        end_to_end(model, preprocessing).export(str(path), format="litert", verbose=False)
    except ImportError as error:
        raise ExportError(
            f"export: the LiteRT converter is missing ({error}); install it with "
            "pip install 'xbn[litert]'."
        ) from None
    interpreter = _litert_interpreter(path)
    detail = interpreter.get_input_details()[0]
    got = []
    for image in images:  # one image at a time: the converted batch is 1
        interpreter.resize_tensor_input(detail["index"], [1, *image.shape])
        interpreter.allocate_tensors()
        interpreter.set_tensor(detail["index"], image[None])
        interpreter.invoke()
        got.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0])
    return compare("LiteRT probabilities", probabilities(source, expected), np.stack(got), log, limit)


def _litert_interpreter(path):
    """The LiteRT interpreter (``ai-edge-litert``), else TensorFlow's deprecated one."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import warnings

        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "tf.lite.Interpreter is deprecated"
            return tf.lite.Interpreter(model_path=str(path))
    return Interpreter(model_path=str(path))


def write_onnx(model, preprocessing, directory, images, expected, source, log, limit):
    try:
        import onnxruntime
        import tf2onnx  # noqa: F401
    except ImportError as error:
        raise ExportError(
            f"export: ONNX export needs tf2onnx and onnxruntime ({error.name} is missing); "
            "install them with pip install 'xbn[onnx]'."
        ) from None
    path = directory / "model.onnx"
    wrapper = end_to_end(model, preprocessing)
    wrapper(images[:1])  # keras' ONNX exporter needs a model that has been called
    wrapper.export(str(path), format="onnx", verbose=False)
    session = onnxruntime.InferenceSession(str(path))
    name = session.get_inputs()[0].name
    got = session.run(None, {name: images})[0]
    return compare("ONNX probabilities", probabilities(source, expected), got, log, limit)
