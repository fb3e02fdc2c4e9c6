"""A model's prediction timed in its two parts, the network and the method's decoder: what
:class:`~posegroup.engine.predictor.Predictor` runs and ``benchmark`` reads."""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np


class TimedRun:
    """A model's prediction in its two parts: ``network(image) -> outputs`` (the network passes:
    resizing, the forward passes, their fusion; a recurrent method's LSTM steps) and
    ``decode(outputs, image) -> (poses, scores[, masks])`` (the method's decoder). Calling it
    with a uint8 (H, W, 3) RGB image returns ``decode(network(image), image)`` and keeps the
    seconds of each part of that call in ``network_s`` and ``decoder_s``."""

    def __init__(self, network: Callable[[np.ndarray], Any], decode: Callable[[Any, np.ndarray], tuple]):
        self.network, self.decode = network, decode
        self.network_s = self.decoder_s = 0.0

    def __call__(self, image: np.ndarray) -> tuple:
        t0 = time.perf_counter()
        outputs = self.network(image)
        t1 = time.perf_counter()
        result = self.decode(outputs, image)
        self.network_s, self.decoder_s = t1 - t0, time.perf_counter() - t1
        return result


def method_run(model, method, **inference_opts: Any) -> TimedRun:
    """The :class:`TimedRun` of ``model`` under its grouping ``method`` (or an object with the
    same split: ``inference_settings``, ``network_outputs``, ``decode``): the settings of
    ``inference_opts`` built (and checked) once, then per image ``method.network_outputs`` and
    ``method.decode``, gradients off."""
    import torch
    settings = method.inference_settings(inference_opts)

    def network(image):
        with torch.inference_mode():
            return method.network_outputs(model, image, settings)

    def decode(outputs, image):
        with torch.inference_mode():
            return method.decode(outputs, settings, np.asarray(image).shape)

    return TimedRun(network, decode)


def adapter_run(net) -> TimedRun:
    """The :class:`TimedRun` of a foreign or pretrained network's adapter
    (:data:`posegroup.methods.ONNX_FORMATS`, :data:`posegroup.methods.PRETRAINED`): its
    ``network_outputs(image)`` and ``decode(outputs, image_shape)``."""
    return TimedRun(net.network_outputs, lambda outputs, image: net.decode(outputs, np.asarray(image).shape))
