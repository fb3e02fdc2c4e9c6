"""Stacked hourglass network, Associative Embedding variant.

Facts (SPEC section 1; Newell et al. 2017, "Associative Embedding"; the reference code
princeton-vl/pose-ae-train read for its behaviour only):

- stem: 7x7 stride-2 conv, a block, 2x2 max-pool, two blocks -> stride 4, ``base_width`` channels
  (reference widths 64 -> 128 -> 128 -> base_width);
- each hourglass of depth ``d`` widens its features as resolution drops: ``base_width`` at the
  top level, ``+ width_increase`` per level (paper AE: 256, 384, 512, 640, 768);
- 3x3 convolution blocks instead of residual modules (AE variant; ``block="residual"`` gives the
  original hourglass bottleneck residual module instead);
- after each hourglass two 3x3 blocks give the stack's features, a 1x1 conv (no
  normalisation, no activation) gives the stack's ``out_channels`` predictions (intermediate
  supervision); the next stack's input is ``x + proj_f(features) + proj_p(prediction)``
  (1x1 projections).

The output stride is 4 and the input side must be a multiple of ``2 ** (depth + 2)``.

``output_stride=2`` (not in the AE paper; the higher-resolution idea of HigherHRNet, Cheng et al.
2020) predicts on a grid twice as fine: each stack's features (stride 4) are upsampled by a 4x4
transposed conv, concatenated with the stem's first (stride-2) features and mixed by a 3x3 block
before the 1x1 prediction conv. The features for other heads (``last_features``) stay at
stride 4 (``feature_stride``). Measured on crowded synthetic scenes (docs/crowds.md): the joints of
small, overlapping people need the finer grid, and it costs a fraction of doubling the input.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

BLOCKS = ("conv3x3", "residual")
OUTPUT_STRIDES = (4, 2)


class ConvBlock(nn.Module):
    """kxk conv (+ optional BatchNorm) + ReLU: (B, C_in, H, W) -> (B, C_out, H/stride, W/stride)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, batch_norm: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=not batch_norm)
        self.bn = nn.BatchNorm2d(c_out) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Residual(nn.Module):
    """Bottleneck residual module of the original stacked hourglass (Newell et al. 2016):
    1x1 (C_out/2) -> 3x3 (C_out/2) -> 1x1 (C_out), pre-activation, 1x1 skip when widths differ.
    (B, C_in, H, W) -> (B, C_out, H, W)."""

    def __init__(self, c_in: int, c_out: int, batch_norm: bool = True):
        super().__init__()
        mid = max(c_out // 2, 1)
        norm = (lambda c: nn.BatchNorm2d(c)) if batch_norm else (lambda c: nn.Identity())
        self.body = nn.Sequential(
            norm(c_in), nn.ReLU(), nn.Conv2d(c_in, mid, 1),
            norm(mid), nn.ReLU(), nn.Conv2d(mid, mid, 3, padding=1),
            norm(mid), nn.ReLU(), nn.Conv2d(mid, c_out, 1),
        )
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


def _block(kind: str, c_in: int, c_out: int, batch_norm: bool) -> nn.Module:
    if kind == "conv3x3":
        return ConvBlock(c_in, c_out, 3, 1, batch_norm)
    return Residual(c_in, c_out, batch_norm)


class Hourglass(nn.Module):
    """One hourglass of ``depth`` levels: (B, width, H, W) -> (B, width, H, W), H and W divisible
    by ``2 ** depth``. Level widths: width, width + increase, ... (AE: +128 per level)."""

    def __init__(self, depth: int, width: int, increase: int, block: str = "conv3x3", batch_norm: bool = False):
        super().__init__()
        inner = width + increase
        self.up1 = _block(block, width, width, batch_norm)
        self.low1 = _block(block, width, inner, batch_norm)
        self.low2 = (Hourglass(depth - 1, inner, increase, block, batch_norm) if depth > 1
                     else _block(block, inner, inner, batch_norm))
        self.low3 = _block(block, inner, width, batch_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = self.up1(x)
        low = self.low3(self.low2(self.low1(F.max_pool2d(x, 2))))
        return up + F.interpolate(low, scale_factor=2, mode="nearest")


def _upsample_block(w: int, up: int, s: int, batch_norm: bool) -> nn.ModuleDict:
    """output_stride 2 read-out: transposed conv (w -> up, stride 4 -> 2), then a 3x3 block over
    it concatenated with the stem's stride-2 features (s channels)."""
    return nn.ModuleDict({
        "deconv": nn.Sequential(nn.ConvTranspose2d(w, up, 4, 2, 1, bias=not batch_norm),
                                *([nn.BatchNorm2d(up)] if batch_norm else []), nn.ReLU()),
        "mix": ConvBlock(up + s, up, 3, 1, batch_norm)})


def _head_groups(head_split, out_channels: int) -> list[int]:
    """``head_split`` checked: None -> [out_channels]; else a list of ints >= 1 summing to
    ``out_channels`` (anything else: one-line ValueError naming head_split)."""
    if head_split is None:
        return [out_channels]
    if (not isinstance(head_split, (list, tuple)) or not head_split
            or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in head_split)
            or sum(head_split) != out_channels):
        raise ValueError(f"StackedHourglass: head_split {head_split!r} must be channel counts in a list "
                         f"(integers >= 1) that sum to the {out_channels} output channels (in a "
                         f"config also 'outputs': one per kind of output the method predicts)")
    return list(head_split)


def _read_out(block: nn.ModuleDict, f: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    """Head features from stack features f (B, w, H/4, W/4) and stem features half (B, s, H/2, W/2):
    an upsample block's (B, up, H/2, W/2), or a plain ``mix`` block's (B, w, H/4, W/4)."""
    if "deconv" in block:
        return block["mix"](torch.cat([block["deconv"](f), half], 1))
    return block["mix"](f)


class StackedHourglass(nn.Module):
    """Stacked hourglass (AE variant).

    Args:
        out_channels: prediction maps per stack (AE: K heatmaps + K*D tags).
        num_stacks: hourglasses (paper AE: 4).
        depth: down-sampling levels per hourglass (paper AE: 4).
        base_width: feature width at the top level (paper AE: 256).
        width_increase: width added per level (paper AE: 128, giving 256..768).
        stem_width: first stem conv width; the stem is 7x7/2 conv (stem_width), block
            (2*stem_width), max-pool, block (2*stem_width), block (base_width). Default 64 (reference).
        block: "conv3x3" (AE paper) or "residual" (original hourglass bottleneck module).
        output_stride: 4 (the paper) or 2 (a transposed-conv upsampling per stack, see above).
        feature_channels: if given, a 1x1 conv + ReLU per stack maps the stack's features to this
            width for ``last_features`` (for the recurrent method); default None keeps the stack
            features themselves (``base_width`` channels).
        batch_norm: BatchNorm after convs. Default False (the reference AE code trains without it);
            the residual block and small CPU models train better with it.
        head_split: None (default: one head predicts all ``out_channels`` maps from shared
            features) or channel counts summing to ``out_channels``, e.g. ``[17, 17]`` for AE's K
            heatmaps and K tags: the first group keeps the head above, each further group gets
            its own head features after the stack -- its own transposed conv and 3x3 mix block
            (output_stride 2) or its own 3x3 conv block (output_stride 4) -- and its own 1x1 conv,
            so the groups share the hourglass but not the layers that read it out. Channels stay
            in order: the groups' maps are concatenated.

    ``forward(x (B, 3, H, W)) -> list of (B, out_channels, H/s, W/s)``, one per stack, s =
    ``self.stride`` (= output_stride). After a forward, ``self.last_features`` is the list of
    per-stack features (B, C_f, H/4, W/4) (``self.feature_stride`` = 4).
    ``self.input_multiple`` = 2 ** (depth + 2): H and W must be multiples of it.
    """

    stride = 4
    feature_stride = 4

    def __init__(self, out_channels: int, *, num_stacks: int = 4, depth: int = 4, base_width: int = 256,
                 width_increase: int = 128, stem_width: int | None = None, block: str = "conv3x3",
                 feature_channels: int | None = None, batch_norm: bool = False, output_stride: int = 4,
                 head_split: "list[int] | None" = None):
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"unknown hourglass block {block!r}; choose one of {BLOCKS}")
        for name, v in (("out_channels", out_channels), ("num_stacks", num_stacks), ("depth", depth),
                        ("base_width", base_width)):
            if int(v) < 1:
                raise ValueError(f"StackedHourglass: {name} must be >= 1, got {v}")
        if width_increase < 0:
            raise ValueError(f"StackedHourglass: width_increase must be >= 0, got {width_increase}")
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"StackedHourglass: output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}")
        groups = _head_groups(head_split, int(out_channels))
        stem_width = 64 if stem_width is None else int(stem_width)
        self.head_split = groups
        self.stride = int(output_stride)
        self.out_channels = int(out_channels)
        self.num_stacks = int(num_stacks)
        self.depth = int(depth)
        self.input_multiple = 2 ** (self.depth + 2)
        w, s = int(base_width), stem_width
        self.stem = nn.Sequential(
            ConvBlock(3, s, 7, 2, batch_norm),
            _block(block, s, 2 * s, batch_norm),
            nn.MaxPool2d(2, 2),
            _block(block, 2 * s, 2 * s, batch_norm),
            _block(block, 2 * s, w, batch_norm),
        )
        self.stacks = nn.ModuleList(
            nn.Sequential(Hourglass(self.depth, w, int(width_increase), block, batch_norm),
                          ConvBlock(w, w, 3, 1, batch_norm), ConvBlock(w, w, 3, 1, batch_norm))
            for _ in range(self.num_stacks))
        # output_stride 2: per stack, features (w, stride 4) -> transposed conv (w/2, stride 2)
        # -> concat stem's stride-2 features (s) -> 3x3 block (w/2) -> the 1x1 head
        up = w // 2
        self.upsample = None if self.stride == 4 else nn.ModuleList(
            _upsample_block(w, up, s, batch_norm) for _ in range(self.num_stacks))
        head_in = w if self.stride == 4 else up
        self.heads = nn.ModuleList(nn.Conv2d(head_in, groups[0], 1) for _ in range(self.num_stacks))
        # head_split: per stack, per further channel group, its own read-out layers and 1x1 conv
        self.branches = None if len(groups) == 1 else nn.ModuleList(nn.ModuleList(nn.ModuleDict({
            **(_upsample_block(w, up, s, batch_norm) if self.stride == 2
               else {"mix": ConvBlock(w, w, 3, 1, batch_norm)}),
            "head": nn.Conv2d(head_in, c, 1)}) for c in groups[1:]) for _ in range(self.num_stacks))
        self.merge_features = nn.ModuleList(nn.Conv2d(w, w, 1) for _ in range(self.num_stacks - 1))
        self.merge_preds = nn.ModuleList(nn.Conv2d(self.out_channels, w, 1) for _ in range(self.num_stacks - 1))
        self.feature_proj = (None if feature_channels is None else nn.ModuleList(
            nn.Sequential(nn.Conv2d(w, int(feature_channels), 1), nn.ReLU()) for _ in range(self.num_stacks)))
        self.feature_channels = w if feature_channels is None else int(feature_channels)
        self.last_features: list[torch.Tensor] = []
        branch_heads = [b["head"] for stack in (self.branches or []) for b in stack]
        for head in [*self.heads, *branch_heads]:  # initial predictions ~0 (heatmap targets are mostly 0)
            nn.init.normal_(head.weight, std=1e-3)
            nn.init.zeros_(head.bias)

    @property
    def features(self) -> list[torch.Tensor]:
        """Alias of ``last_features`` (per-stack features of the last forward)."""
        return self.last_features

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"StackedHourglass expects (B, 3, H, W) input, got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        m = self.input_multiple
        if h % m or w % m:
            raise ValueError(f"StackedHourglass(depth={self.depth}) needs input sides that are multiples of "
                             f"{m}, got {h}x{w}")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 3, H, W) -> list of num_stacks tensors (B, out_channels, H/s, W/s), s = self.stride."""
        self.check_input(x)
        half = self.stem[0](x)                                   # (B, s, H/2, W/2)
        x = self.stem[1:](half)
        preds, feats = [], []
        for i, stack in enumerate(self.stacks):
            f = stack(x)
            p = self.heads[i](f if self.upsample is None else _read_out(self.upsample[i], f, half))
            if self.branches is not None:
                p = torch.cat([p, *(b["head"](_read_out(b, f, half)) for b in self.branches[i])], 1)
            preds.append(p)
            if self.upsample is not None:
                p = F.avg_pool2d(p, 2)                           # back to stride 4 for the next stack
            feats.append(f if self.feature_proj is None else self.feature_proj[i](f))
            if i < self.num_stacks - 1:
                x = x + self.merge_features[i](f) + self.merge_preds[i](p)
        self.last_features = feats
        return preds


# Named configurations (keyword arguments of StackedHourglass).
CONFIGS: dict[str, dict] = {
    # SPEC section 1 / AE paper: 4 stacks, depth 4, widths 256, 384, 512, 640, 768, 3x3 convs.
    "ae_paper": dict(num_stacks=4, depth=4, base_width=256, width_increase=128, stem_width=64,
                     block="conv3x3", batch_norm=False),
    # Small CPU model: trains at 128x128 input (32x32 output) on a CPU; BatchNorm for fast convergence.
    "tiny": dict(num_stacks=2, depth=3, base_width=48, width_increase=16, stem_width=16,
                 block="conv3x3", batch_norm=True),
}


def hourglass_from_config(cfg: "dict | str | None", out_channels: int,
                          output_groups: "list[int] | None" = None) -> StackedHourglass:
    """Build a :class:`StackedHourglass` from a config.

    ``cfg`` is a named config ("ae_paper", "tiny"), or a dict of StackedHourglass keyword
    arguments, optionally with ``name`` (a named config whose values the other keys override).
    ``output_groups``: the kinds of output in the ``out_channels`` (a method's
    ``output_groups``, default one), what ``head_split: outputs`` stands for.
    """
    if cfg is None:
        cfg = {}
    if isinstance(cfg, str):
        cfg = {"name": cfg}
    if not isinstance(cfg, dict):
        raise ValueError(f"hourglass config must be a dict or a name, got {type(cfg).__name__}")
    cfg = dict(cfg)
    name = cfg.pop("name", None)
    cfg.pop("type", None)
    base = {}
    if name is not None:
        if name not in CONFIGS:
            raise ValueError(f"unknown hourglass config {name!r}; choose one of {sorted(CONFIGS)}")
        base = dict(CONFIGS[name])
    base.update(cfg)
    if base.get("head_split") == "outputs":
        base["head_split"] = list(output_groups or [out_channels])
    allowed = {"num_stacks", "depth", "base_width", "width_increase", "stem_width", "block",
               "feature_channels", "batch_norm", "output_stride", "head_split"}
    unknown = sorted(set(base) - allowed)
    if unknown:
        raise ValueError(f"unknown hourglass option(s) {unknown}; allowed: {sorted(allowed)}")
    return StackedHourglass(out_channels, **base)


__all__ = ["StackedHourglass", "Hourglass", "ConvBlock", "Residual", "CONFIGS", "hourglass_from_config"]
