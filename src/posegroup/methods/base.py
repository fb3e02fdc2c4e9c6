"""The contract every grouping method fulfils, so that data, training, prediction,
evaluation and the CLI never change when a method is added.

Coordinates: continuous pixel coordinates of the *network input*, where input pixel
(row i, column j) covers [j, j+1) x [i, i+1), so its centre is (j + 0.5, i + 0.5). A network of
output stride s puts output cell (i, j) at input position ((j + 0.5) s, (i + 0.5) s): a point at
input (x, y) is at output (x / s, y / s).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from ..skeleton import KeypointSet
from .settings import from_options, positive, setting, updated


@dataclasses.dataclass(frozen=True)
class InferenceSettings:
    """The inference settings every method takes; a method's own class
    (:attr:`Method.INFERENCE_SETTINGS`) derives from this one and adds its fields."""
    input_size: int = setting(512, positive, "> 0: longer image side fed to the network")


class Method:
    """A grouping method: targets (encode), head layout, loss and decoding.

    Subclasses set ``name`` and implement every method below.
    """

    name: str = "base"

    #: The method whose trained network this one's ``model.init_from`` reads (None: trains from
    #: scratch). Recipes that train several methods (``posegroup demo --train``) train that one
    #: first and point ``init_from`` at it.
    INIT_FROM_METHOD: str | None = None

    #: Every inference option of the method (a config's ``test`` section, the keywords of
    #: :meth:`predict`): a frozen dataclass of :func:`~posegroup.methods.settings.setting`
    #: fields, each with its default and check: the options of the network passes (input size,
    #: scales, flip...) and of the decoder. :meth:`inference_settings` builds one.
    INFERENCE_SETTINGS: type = InferenceSettings

    #: Test-time options settable from the command line (openpifpaf-style: each method owns its
    #: flags): option name -> argparse keywords (``type``, ``help``, optional ``nargs``,
    #: ``choices``). ``type: bool`` gives a ``--name`` / ``--no-name`` switch. Every name is a
    #: field of :attr:`INFERENCE_SETTINGS`.
    INFERENCE_FLAGS: dict[str, dict] = {
        "input_size": {"type": int, "help": "longer image side fed to the network"},
    }

    #: The fields of :attr:`INFERENCE_SETTINGS` that set up the network passes, with their
    #: defaults (names for tools; the settings object is what the method reads). Default: none.
    INFERENCE_OPTIONS: dict[str, Any] = {}

    #: The fields of :attr:`INFERENCE_SETTINGS` its decoders read. Default: none.
    DECODE_OPTIONS: tuple[str, ...] = ()

    @classmethod
    def check_options(cls, options: dict, *, what: str = "method.options") -> None:
        """A one-line ValueError (naming ``<what>.<key>``) when ``options``, a config's
        ``method.options``, do not build this method. Default: the method built with them on
        COCO-17."""
        from ..skeleton import COCO17
        cls(COCO17, **dict(options))

    @classmethod
    def inference_defaults(cls, options: dict) -> dict:
        """The inference settings that a config's ``method.options`` set (e.g. AE's decode
        options, PersonLab's ``decode:``): field name -> value, the defaults of a model trained
        with them. Default: none."""
        return {}

    @classmethod
    def check_inference_options(cls, options: dict | None, method_options: dict | None = None, *,
                                what: str = "test"):
        """The frozen :attr:`INFERENCE_SETTINGS` of the inference ``options`` (a config's
        ``test`` section) over the defaults ``method_options`` set (:meth:`inference_defaults`).
        Names and values are checked: a fault is a one-line ValueError naming the key, ``what``
        (``method.options`` for a default) and the value. An option given as None takes its
        default. No keypoint set needed (config load time)."""
        base = from_options(cls.INFERENCE_SETTINGS, cls.inference_defaults(dict(method_options or {})))
        return updated(base, {k: v for k, v in (options or {}).items() if v is not None}, what=what)

    def inference_settings(self, options: dict | None = None, *, what: str = "test"):
        """:meth:`check_inference_options` of ``options`` over this method's own
        ``method.options``: the settings :meth:`network_outputs` and :meth:`decode` read."""
        return self.check_inference_options(options, self.cfg, what=what)

    def __init__(self, keypoint_set: KeypointSet, **cfg: Any):
        self.keypoint_set = keypoint_set
        self.cfg = dict(cfg)

    # -- head -------------------------------------------------------------------------------
    @property
    def num_channels(self) -> int:
        """Prediction channels per hourglass stack (e.g. AE: K heatmaps + K*D tags)."""
        raise NotImplementedError

    @property
    def output_groups(self) -> list[int]:
        """The kinds of output in the prediction's channels, in order, as channel counts summing
        to :attr:`num_channels` (e.g. AE: [K, K*D]): what ``model.head_split: outputs`` gives each
        its own read-out layers. Default: one group."""
        return [self.num_channels]

    # -- targets.py -----------------------------------------------------------------------
    def encode(self, keypoints: np.ndarray, ignore_mask: np.ndarray, instance_masks: np.ndarray | None,
               output_size: tuple[int, int], stride: int) -> dict[str, np.ndarray]:
        """Training targets for one image.

        Args:
            keypoints: (N, K, 3) x, y, v in input pixels (v: 0 unlabelled, 1 occluded, 2 visible).
            ignore_mask: (H_in, W_in) bool, True where the loss is ignored (crowd, unannotated people).
            instance_masks: (N, H_in, W_in) uint8 person masks or None.
            output_size: (H, W) of the network output.
            stride: input pixels per output cell.
        Returns: dict of fixed-shape arrays (they are stacked into a batch by the data loader).
        """
        raise NotImplementedError

    # -- loss.py --------------------------------------------------------------------------
    def loss(self, predictions: list[torch.Tensor], targets: dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss summed over stacks. predictions: one (B, C, H, W) tensor per stack."""
        raise NotImplementedError

    # -- optional hooks ----------------------------------------------------------------------
    #: What ``posegroup export`` records of the method's network: ``"forward"`` (the last stack of
    #: ``model(x)``) or ``"export_forward"`` (``model.export_forward(x)``, e.g. the features a
    #: recurrent head reads; the head stays in PyTorch). Default: ``"forward"``.
    EXPORT_GRAPH: str = "forward"

    def load_init_state(self, model: torch.nn.Module, state_dict: dict, source: str) -> None:
        """``model.init_from``: initialise a fresh ``model`` from the weights ``state_dict`` of
        the checkpoint ``source``; a mismatch is a one-line ValueError or RuntimeError. Default:
        ``model.load_state_dict(state_dict)`` (every weight, strictly)."""
        model.load_state_dict(state_dict)

    def build_model(self, model_cfg: dict) -> torch.nn.Module | None:
        """The method's own network for the config's ``model`` section (e.g. a head on
        ``model.backbone: posenet_mobilenet``, or the recurrent decoder on an hourglass), or
        None: the engine builds a stacked hourglass with :attr:`num_channels` outputs per stack.
        A bad ``model`` key is a one-line ValueError naming ``model.<key>``. Default: None."""
        return None

    def training_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
                      ) -> tuple[torch.Tensor, dict[str, float]] | None:
        """The loss of a training batch for a method whose loss needs the model (e.g. an unrolled
        decoder): ``batch`` holds ``image`` (B, 3, S, S) and the batched :meth:`encode` targets;
        returns ``(loss, parts)``, run under the engine's autocast. Default: None, the engine
        runs the network's stacks through :meth:`loss`."""
        return None

    def predict_true_ids(self, model: torch.nn.Module, image: np.ndarray, keypoints: np.ndarray,
                         **opts: Any) -> tuple | None:
        """The grouping ceiling: :meth:`predict` of ``image`` with the people grouped by the true
        ``keypoints`` (N, K, 3) image px (``benchmark train``'s and ``benchmark methods``' true-id
        AP). A method offers it by overriding this hook. Default: None (no ceiling)."""
        return None

    def draw_maps(self, model: torch.nn.Module, image: np.ndarray, *, canvas: np.ndarray | None = None,
                  **opts: Any) -> list[np.ndarray]:
        """Pictures of the network's maps for ``image``, drawn over ``canvas`` (default: the
        image; uint8 (H, W, 3), e.g. the image enlarged) for the demo and reports. ``opts``: test
        options (``input_size``...). Default: none."""
        return []

    def evaluation_figures(self, results: list[dict], gt: dict, image_ids=None) -> dict[str, float]:
        """Figures ``evaluate`` reports beside AP for this method's COCO ``results`` (image ids
        already those of the COCO ground-truth dict ``gt``), over the images ``image_ids`` (None:
        every ground-truth image): name -> value, printed in that order. Default: none."""
        return {}

    # -- inference: the network, then decode.py ----------------------------------------------
    def network_outputs(self, model: torch.nn.Module, image: np.ndarray, settings=None, **options: Any) -> Any:
        """The network passes of one RGB uint8 image (H, W, 3) under ``settings`` (an
        :attr:`INFERENCE_SETTINGS` object; None: :meth:`inference_settings` of ``options``):
        resizing, scales, flip, the forward passes and their fusion. Returns the method's raw
        outputs (arrays on the network's grid and the grid's scale), what :meth:`decode` reads."""
        raise NotImplementedError

    def decode(self, outputs: Any, settings, image_shape: tuple) -> tuple:
        """The people of :meth:`network_outputs`' ``outputs`` under ``settings``, for an image
        of shape ``image_shape`` (H, W, ...): the return value of :meth:`predict`."""
        raise NotImplementedError

    def predict(self, model: torch.nn.Module, image: np.ndarray, **opts: Any
                ) -> tuple[np.ndarray, np.ndarray]:
        """Run ``model`` on one RGB uint8 image (H, W, 3) and decode: :meth:`decode` of
        :meth:`network_outputs` under :meth:`inference_settings` of ``opts``.

        Returns ``(poses, scores)`` with poses (N, K, 3) = x, y, score in *image* pixels and
        scores (N,); a method that segments returns ``(poses, scores, masks)`` with masks
        (N, H, W) bool in image pixels. ``opts`` are the method's test-time options (flip,
        scales, refine, thresholds...).
        """
        settings = self.inference_settings(opts)
        return self.decode(self.network_outputs(model, image, settings), settings, np.asarray(image).shape)
