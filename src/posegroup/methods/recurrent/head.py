"""The recurrent decoder of Briq, Doering & Gall (arXiv 1904.11864), SPEC section 3.

Symbols: B images, C feature channels (all hourglass stacks concatenated), J joints,
(H, W) output grid, T steps (one person per step), P feedback passes per step.

- :class:`ConvLSTMCell`: a ConvLSTM layer (Shi et al. 2015): the four gates from one kxk
  convolution of concat(input, h); c' = f * c + i * g, h' = o * tanh(c').
- :class:`ConvLSTM`: stacked cells; each layer's hidden width is half the previous one's
  ("the hidden state size is reduced by factor 2 at the output of every LSTM").
- :class:`RunningNorm`: the paper's batch-size-1 trick: y = gamma * (x - mean) / std + beta with
  the *running* statistics of the data, never the batch's.
- :class:`RecurrentHead`: LSTM1 (+ output conv giving ONE person's J heatmaps, + stop FC on
  the concatenated spatial max of every layer's hidden state), the feedback loop, and the
  optional LSTM2 that refines a given sequence of people.
- :class:`RecurrentPoseNet`: a stacked hourglass (the AE network whose features are read) and
  the head. ``forward(image)`` is the hourglass's forward (what ONNX export sees).
"""
from __future__ import annotations

import math

import torch
from torch import nn

#: The paper's stop threshold omega = sigmoid(-1).
OMEGA = 1.0 / (1.0 + math.e)

#: How the head uses a joint prior appended to its features (:class:`RecurrentHead`).
JOINT_PRIORS = ("none", "input", "gate", "seed")
#: The joint priors whose steps select from the prior: heatmaps = prior x sigmoid(LSTM1's output).
GATED_PRIORS = ("gate", "seed")
#: ``joint_prior: seed``: the seed blob's std and the scale of the coordinates from the seed, cells.
SEED_SIGMA, SEED_SCALE = 1.5, 8.0


def seed_cells(remaining: torch.Tensor) -> torch.Tensor:
    """(B, J, H, W) -> (B,) int64: the flat index (row * W + column) of each image's strongest
    unclaimed joint (the largest value over every joint and cell)."""
    return remaining.detach().amax(1).flatten(1).argmax(1)


def seed_maps(remaining: torch.Tensor, best: torch.Tensor | None = None) -> torch.Tensor:
    """Where a step starts (``joint_prior: seed``): the cell of the strongest joint still unclaimed.

    remaining: (B, J, H, W) the joint probabilities no earlier step has taken; best: (B,) its
    :func:`seed_cells` (None: found here).
    Returns (B, 3, H, W): a Gaussian of std :data:`SEED_SIGMA` cells (peak 1) at the seed cell,
    then every cell's (x, y) from the seed in units of :data:`SEED_SCALE` cells. No gradient.
    """
    r = remaining.detach()
    b, _, h, w = r.shape
    best = seed_cells(r) if best is None else best
    sy, sx = (best // w).to(r.dtype), (best % w).to(r.dtype)
    ys = torch.arange(h, device=r.device, dtype=r.dtype)[None, :, None] - sy[:, None, None]
    xs = torch.arange(w, device=r.device, dtype=r.dtype)[None, None, :] - sx[:, None, None]
    blob = torch.exp(-(xs ** 2 + ys ** 2) / (2 * SEED_SIGMA ** 2))
    return torch.stack([blob, xs.expand(b, h, w) / SEED_SCALE, ys.expand(b, h, w) / SEED_SCALE], 1)


def seed_context(feats: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """Every cell's features times the seed cell's (``seed_context``): channel c of cell (y, x)
    is feats[c, y, x] * feats[c, seed], so a 1x1 convolution of it is a learned similarity to the
    seed, image-wide, however far the seed is.

    feats: (B, C, H, W); best: (B,) flat seed cells (:func:`seed_cells`). Returns (B, C, H, W).
    """
    b, c, h, w = feats.shape
    at_seed = feats.flatten(2).gather(2, best.to(feats.device).view(b, 1, 1).expand(b, c, 1))
    return feats * at_seed.view(b, c, 1, 1)


def seed_type_maps(remaining: torch.Tensor, best: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Which joint the seed is (``seed_type``): k, the joint strongest at the seed cell.

    remaining: (B, J, H, W); best: (B,) flat seed cells (:func:`seed_cells`); coords: (B, 2, H, W)
    every cell's (x, y) from the seed (:func:`seed_maps`' last two channels).
    Returns (B, 3J, H, W): J channels one-hot in k, the same everywhere, then 2J channels that are
    zero but for the pair (2k, 2k + 1), which holds ``coords``. No gradient.
    """
    r = remaining.detach()
    b, j, h, w = r.shape
    kind = r.flatten(2).gather(2, best.to(r.device).view(b, 1, 1).expand(b, j, 1))[..., 0].argmax(1)
    onehot = torch.nn.functional.one_hot(kind, j).to(r.dtype)                       # (B, J)
    placed = onehot[:, :, None, None, None] * coords.to(r.dtype)[:, None]            # (B, J, 2, H, W)
    return torch.cat([onehot[:, :, None, None].expand(b, j, h, w), placed.reshape(b, 2 * j, h, w)], 1)


class ConvLSTMCell(nn.Module):
    """One ConvLSTM layer. step(x (B, C_in, H, W), (h, c) each (B, C_h, H, W)) -> (h', c')."""

    def __init__(self, in_channels: int, hidden: int, kernel: int = 3, dilation: int = 1):
        super().__init__()
        self.hidden = int(hidden)
        self.gates = nn.Conv2d(in_channels + self.hidden, 4 * self.hidden, kernel,
                               padding=int(dilation) * (kernel // 2), dilation=int(dilation))
        with torch.no_grad():  # forget-gate bias 1: remember by default (Jozefowicz et al. 2015)
            self.gates.bias.zero_()
            self.gates.bias[self.hidden:2 * self.hidden] = 1.0

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        i, f, o, g = self.gates(torch.cat([x, h], 1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


def halving_widths(first: int, layers: int) -> list[int]:
    """Hidden widths of ``layers`` stacked layers, halved at each layer: 64, 3 -> [64, 32, 16]."""
    if int(first) < 1 or int(layers) < 1:
        raise ValueError(f"hidden width and layer count must be >= 1, got {first}, {layers}")
    return [max(1, int(first) // 2 ** i) for i in range(int(layers))]


class ConvLSTM(nn.Module):
    """Stacked ConvLSTM cells; the input of layer l > 0 is layer l-1's new hidden state.

    forward(x (B, C_in, H, W), state list of (h, c)) -> new state (same layout).
    ``dilation`` d: the layers after the first convolve with dilation d (each reaches
    d (kernel // 2) cells either side instead of kernel // 2; the first layer keeps 1)."""

    def __init__(self, in_channels: int, widths: list[int], kernel: int = 3, dilation: int = 1):
        super().__init__()
        self.widths = [int(w) for w in widths]
        ins = [int(in_channels)] + self.widths[:-1]
        self.cells = nn.ModuleList(ConvLSTMCell(i, w, kernel, 1 if layer == 0 else dilation)
                                   for layer, (i, w) in enumerate(zip(ins, self.widths)))

    def zero_state(self, like: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        b, _, h, w = like.shape
        return [(like.new_zeros(b, c, h, w), like.new_zeros(b, c, h, w)) for c in self.widths]

    def forward(self, x: torch.Tensor, state):
        new = []
        for cell, s in zip(self.cells, state):
            h, c = cell(x, s)
            new.append((h, c))
            x = h
        return new


def detach_state(state, cut: torch.Tensor | None = None):
    """The state with its history cut (truncated back-propagation).

    state: list of (h, c), each (B, C_l, H, W); cut: (B,) bool, the images whose history is cut
    (None: all). Returns the same layout; an uncut image keeps its graph."""
    if cut is None:
        return [(h.detach(), c.detach()) for h, c in state]
    keep = cut.to(state[0][0].device).view(-1, 1, 1, 1)
    return [(torch.where(keep, h.detach(), h), torch.where(keep, c.detach(), c)) for h, c in state]


def chunk_end(t: int, stopped: torch.Tensor, bptt_steps: int | None, cut_at_stop: bool) -> torch.Tensor:
    """Algorithm 1, line 10: whether step ``t`` (1-based) closes a chunk (match, back-propagate).

    stopped: (B,) bool, p_t < omega at this step. A chunk closes every ``bptt_steps`` (T) steps
    and, with ``cut_at_stop`` (the paper), at every step whose p_t < omega.
    Returns (B,) bool."""
    every = bool(bptt_steps) and t % int(bptt_steps) == 0
    ends = torch.full_like(stopped, every, dtype=torch.bool)
    return ends | stopped.bool() if cut_at_stop else ends


def chunk_ends(stop_probs, *, bptt_steps: int | None, stop_threshold: float = OMEGA,
               cut_at_stop: bool = True) -> torch.Tensor:
    """:func:`chunk_end` of every step: stop_probs (L,) p_t -> (L,) bool (step t closes a chunk).

    The same rule cuts the gradient in :meth:`RecurrentHead.unroll` and groups the steps
    that are matched together in the loss (:func:`.loss.assign_people`)."""
    p = torch.as_tensor(stop_probs, dtype=torch.float64).reshape(-1)
    stopped = ~(p >= stop_threshold)
    if len(p) == 0:
        return torch.zeros(0, dtype=torch.bool)
    return torch.stack([chunk_end(t + 1, stopped[t:t + 1], bptt_steps, cut_at_stop)[0] for t in range(len(p))])


class RunningNorm(nn.Module):
    """Affine normalisation with running statistics (BatchNorm whose normalisation always uses
    the running mean / variance; in training they are updated from each batch first).
    (B, C + R, H, W) -> (B, C + R, H, W): the last R = ``passthrough`` channels (probabilities
    already in [0, 1], e.g. a joint prior) are passed on as they are."""

    def __init__(self, channels: int, momentum: float = 0.01, eps: float = 1e-5, passthrough: int = 0):
        super().__init__()
        self.momentum, self.eps = float(momentum), float(eps)
        self.passthrough = int(passthrough)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.register_buffer("num_batches", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.passthrough:
            r = self.passthrough
            return torch.cat([self._normalise(x[:, :-r]), x[:, -r:]], 1)
        return self._normalise(x)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                xf = x.float()   # statistics in float32 (x may be bfloat16 under CPU autocast)
                mean = xf.mean(dim=(0, 2, 3))
                var = xf.var(dim=(0, 2, 3), unbiased=False)
                m = 1.0 if int(self.num_batches) == 0 else self.momentum   # first batch: take it whole
                self.running_mean.lerp_(mean, m)
                self.running_var.lerp_(var, m)
                self.num_batches += 1
        # copies: a later call updates the buffers in place, this call's graph keeps its values
        scale = self.weight / torch.sqrt(self.running_var.clone() + self.eps)
        shift = self.bias - self.running_mean.clone() * scale
        return x * scale[None, :, None, None] + shift[None, :, None, None]


class RecurrentHead(nn.Module):
    """LSTM1 (one person per step, feedback loop, stop head) and the optional LSTM2.

    Args:
        feature_channels: C, the backbone's (a joint prior's J channels come on top).
        num_joints: J.
        hidden_width: LSTM1's first hidden width (halved per layer). Paper: not given; GPU config 64.
        lstm1_layers: paper 3.
        feedback_passes: P, LSTM1 calls per person, each fed concat(features, H_t) with H_t the
            previous pass's heatmaps (uniform noise in [0, 0.1] at the first pass). Paper: 2.
            0 = no loop: one call whose input is the features alone.
        lstm2_hidden_width: LSTM2's first hidden width, or None/0 for no LSTM2.
        lstm2_layers: paper 2.
        kernel: ConvLSTM kernel (paper 3).
        stop_bias_init: initial bias of the stop FC (-2: p = 0.12 < omega; see below).
        joint_prior: how J joint probabilities appended to the C features (the input's last J
            channels, left unnormalised) are used, :data:`JOINT_PRIORS`: "none" (there are none:
            the paper), "input" (the LSTM reads them) or "gate" (read, and each step's heatmaps
            are the prior times sigmoid of LSTM1's output: a step selects one person's joints
            among those the prior finds; LSTM2's output is not gated) or "seed" (as "gate", on
            the part of the prior no earlier step took: after each step the remaining prior is
            multiplied by 1 - sigmoid(output); LSTM1 also reads :func:`seed_maps` of it, where
            the strongest unclaimed joint is and each cell's place from it, and the stop head
            also reads each joint's strongest unclaimed probability).
        feature_width: 0 (the paper: the LSTMs read the C features) or F > 0: a learned 1x1
            convolution (:meth:`project`) reduces the normalised features to F channels first
            (the joint prior, if any, is kept as it is after them).
        seed_context: (``joint_prior: seed`` only) LSTM1 also reads :func:`seed_context` of what
            it reads: each cell's features times the seed cell's.
        seed_type: (``joint_prior: seed`` only) LSTM1 also reads :func:`seed_type_maps`: which
            joint the seed is, image-wide, and each cell's place from the seed in that joint's
            channels.
        lstm1_dilation: dilation of LSTM1's layers after the first (1: the paper's).
    """

    def __init__(self, feature_channels: int, num_joints: int, *, hidden_width: int = 64, lstm1_layers: int = 3,
                 feedback_passes: int = 2, lstm2_hidden_width: int | None = None, lstm2_layers: int = 2,
                 kernel: int = 3, stop_bias_init: float = -2.0, joint_prior: str = "none",
                 feature_width: int = 0, seed_context: bool = False, seed_type: bool = False,
                 lstm1_dilation: int = 1):
        super().__init__()
        if joint_prior not in JOINT_PRIORS:
            raise ValueError(f"joint_prior must be one of {JOINT_PRIORS}, got {joint_prior!r}")
        for name, on in (("seed_context", seed_context), ("seed_type", seed_type)):
            if on and joint_prior != "seed":
                raise ValueError(f"method.options.{name} needs method.options.joint_prior: seed, got {joint_prior!r}")
        self.seed_context, self.seed_type = bool(seed_context), bool(seed_type)
        self.num_joints = int(num_joints)
        self.feedback_passes = int(feedback_passes)
        self.joint_prior = joint_prior
        prior = self.num_joints if joint_prior != "none" else 0
        self.norm = RunningNorm(feature_channels, passthrough=prior)
        self.reduce = nn.Conv2d(feature_channels, int(feature_width), 1) if feature_width else None
        read = (int(feature_width) or feature_channels) + prior          # what the LSTMs read (project)
        widths = halving_widths(hidden_width, lstm1_layers)
        seeded = joint_prior == "seed"
        in1 = (read * (1 + self.seed_context) + (self.num_joints if self.feedback_passes > 0 else 0) + 3 * seeded
               + 3 * self.num_joints * self.seed_type)
        self.lstm1 = ConvLSTM(in1, widths, kernel, lstm1_dilation)
        self.out1 = nn.Conv2d(widths[-1], self.num_joints, 1)
        self.stop = nn.Linear(sum(widths) + self.num_joints * seeded, 1)
        self.lstm2 = self.out2 = None
        if lstm2_hidden_width:
            w2 = halving_widths(lstm2_hidden_width, lstm2_layers)
            self.lstm2 = ConvLSTM(read + self.num_joints, w2, kernel)
            self.out2 = nn.Conv2d(w2[-1], self.num_joints, 1)
        with torch.no_grad():
            # p starts near sigmoid(stop_bias_init): below omega, the first training steps run the
            # minimum Z + 1 steps per image (not the step limit, as p = 0.5 does) and the stop
            # loss lifts p for the true people. Overfit test (4 images, 300 steps): AP 0.98 with
            # -2, 0.99 with 0 (one seed each: no difference in AP).
            self.stop.bias.fill_(float(stop_bias_init))
        for conv in (self.out1, self.out2):
            if conv is not None:  # initial heatmaps ~0, as the hourglass heads
                nn.init.normal_(conv.weight, std=1e-3)
                nn.init.zeros_(conv.bias)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised features (B, C [+ J], H, W) -> what the LSTMs read: themselves, or with
        ``feature_width`` F their 1x1 reduction, the joint prior's J channels kept last:
        (B, F [+ J], H, W)."""
        if self.reduce is None:
            return x
        c = x.shape[1] - self.norm.passthrough
        return torch.cat([self.reduce(x[:, :c]), x[:, c:]], 1)

    def person(self, feats: torch.Tensor, state, generator: torch.Generator | None = None,
               remaining: torch.Tensor | None = None, best: torch.Tensor | None = None,
               select_power: float = 1.0):
        """One step t of LSTM1: the feedback loop for one person.

        feats: (B, C, H, W) normalised and :meth:`project`-ed features; state: LSTM1 state;
        remaining: (B, J, H, W) the unclaimed prior (``joint_prior: seed`` only; :meth:`unroll`
        starts it at the prior); best: (B,) its :func:`seed_cells` (None: found here);
        select_power: (``gate`` / ``seed``, inference) the heatmaps returned are the prior times
        the last pass's selection to this power (1: as trained; the feedback passes and the prior
        left for the next step use the selection itself).
        Returns heatmaps (B, J, H, W), stop logit (B,) (p_t = sigmoid of it), new state, and
        with ``seed`` the prior left for the next step (else None).
        """
        b, _, h, w = feats.shape
        passes = max(1, self.feedback_passes)
        seeded = self.joint_prior == "seed"
        base = feats
        if seeded:
            best = seed_cells(remaining) if best is None else best
            extra = [seed_context(feats, best)] if self.seed_context else []
            where = seed_maps(remaining, best).to(feats.dtype)
            kind = [seed_type_maps(remaining, best, where[:, 1:]).to(feats.dtype)] if self.seed_type else []
            base = torch.cat([feats, *extra, where, *kind], 1)
        heat = None
        if self.feedback_passes > 0:
            noise = torch.rand((b, self.num_joints, h, w), generator=generator, device="cpu")
            heat = 0.1 * noise.to(feats.device, feats.dtype)
        gated = self.joint_prior in GATED_PRIORS
        source = remaining if seeded else feats[:, -self.num_joints:]      # what a gated step selects from
        for _ in range(passes):
            x = base if heat is None else torch.cat([base, heat], 1)
            state = self.lstm1(x, state)
            heat = self.out1(state[-1][0])
            if gated:
                select = torch.sigmoid(heat)
                heat = source * select
        if gated and select_power != 1.0:
            heat = source * select ** select_power
        pooled = [hh.amax(dim=(2, 3)) for hh, _ in state] + ([remaining.detach().amax(dim=(2, 3))] if seeded else [])
        left = remaining.detach() * (1 - select.detach()) if seeded else None
        return heat, self.stop(torch.cat(pooled, 1))[:, 0], state, left

    def unroll(self, feats: torch.Tensor, *, max_steps: int, min_steps: torch.Tensor | None = None,
               stop_threshold: float = OMEGA, bptt_steps: int | None = None, cut_at_stop: bool = False,
               normalized: bool = False, generator: torch.Generator | None = None,
               record_states: list | None = None, record_seeds: list | None = None, select_power: float = 1.0):
        """Run LSTM1 person by person (Algorithm 1's loop).

        Image b finishes after step t when t >= min_steps[b] and some step <= t had
        p_t < stop_threshold (training: min_steps = Z + 1, so |p| = max(Z_hat, Z) + 1 steps are
        taken; inference: min_steps = 1, i.e. the first stop), or at ``max_steps``. The state
        of an image is detached after every step that closes a chunk (:func:`chunk_end`: every
        ``bptt_steps`` T steps, and at every p_t < omega with ``cut_at_stop``): nothing after
        the cut back-propagates into the chunk before it; the hidden state itself carries on.

        feats: (B, C, H, W) raw features, normalised here (``normalized``: already normalised
        by :attr:`norm`, which then is not updated again). ``record_seeds`` (``joint_prior:
        seed``): each step's :func:`seed_cells` (B,) is appended to it. ``select_power``: see
        :meth:`person`.
        Returns heatmaps (B, T, J, H, W), stop logits (B, T), lengths (B,) int64 (steps taken
        by each image; steps beyond an image's length are computed but meaningless).
        """
        x = self.project(feats if normalized else self.norm(feats))
        b = x.shape[0]
        state = self.lstm1.zero_state(x)
        need = torch.ones(b, dtype=torch.long) if min_steps is None else min_steps.detach().cpu().long()
        lengths = torch.zeros(b, dtype=torch.long)
        stopped = torch.zeros(b, dtype=torch.bool)
        heats, logits = [], []
        remaining = x[:, -self.num_joints:] if self.joint_prior == "seed" else None
        for t in range(1, int(max_steps) + 1):
            best = seed_cells(remaining) if remaining is not None else None
            if record_seeds is not None and best is not None:
                record_seeds.append(best)
            heat, logit, state, remaining = self.person(x, state, generator, remaining, best, select_power)
            heats.append(heat)
            logits.append(logit)
            if record_states is not None:
                record_states.append(state)
            below = torch.sigmoid(logit.detach().float()).cpu() < stop_threshold
            stopped |= below
            done = (lengths == 0) & stopped & (t >= need)
            lengths[done] = t
            if bool((lengths > 0).all()):
                break
            cut = chunk_end(t, below, bptt_steps, cut_at_stop)
            if bool(cut.any()):
                state = detach_state(state, None if bool(cut.all()) else cut)
        lengths[lengths == 0] = len(heats)
        return torch.stack(heats, 1), torch.stack(logits, 1), lengths

    def refine(self, feats: torch.Tensor, heats: torch.Tensor, *, normalized: bool = False) -> torch.Tensor:
        """LSTM2: a sequence of people, already in the chosen order, refined one per step.

        feats: (B, C, H, W) raw features (``normalized``: already normalised by :attr:`norm`);
        heats: (B, N, J, H, W) LSTM1 heatmaps (the input). Returns (B, N, J, H, W).
        """
        if self.lstm2 is None:
            raise ValueError("this head has no LSTM2 (lstm2: false)")
        x = self.project(feats if normalized else self.norm(feats))
        state = self.lstm2.zero_state(x)
        outs = []
        for n in range(heats.shape[1]):
            state = self.lstm2(torch.cat([x, heats[:, n]], 1), state)
            outs.append(self.out2(state[-1][0]))
        if not outs:
            return heats.new_zeros(heats.shape)
        return torch.stack(outs, 1)


class RecurrentPoseNet(nn.Module):
    """Hourglass backbone + :class:`RecurrentHead`.

    ``forward(image)`` returns the backbone's per-stack predictions (and stores its features);
    :meth:`features` returns the concatenated features (B, C, H, W) of all stacks.
    With ``freeze_backbone`` the backbone (except its optional ``feature_proj`` convs, which
    the AE loss never trains) gets no gradient and stays in eval mode. With ``offsets`` the
    backbone is a PoseNet one that keeps its pretrained short-range offset head (frozen: no loss
    trains it); :meth:`features` then also stores them in ``last_offsets`` (B, 2J, H, W) and
    :meth:`export_forward` returns them after the features. With ``joint_prior`` it keeps
    PoseNet's pretrained heatmap head (frozen too) and :meth:`features` appends its J joint
    probabilities (sigmoid of the logits) to the features: the head's joint prior.
    """

    def __init__(self, backbone: nn.Module, head: RecurrentHead, *, freeze_backbone: bool = True,
                 offsets: bool = False, ae_tag_dim: int | None = None, joint_prior: bool = False):
        super().__init__()
        self.backbone = backbone
        self.ae_tag_dim = ae_tag_dim       # an AE hourglass: its last stack's J heatmaps and J*D tags
        self.last_outputs = None
        self.head = head
        self.freeze_backbone = bool(freeze_backbone)
        self.stride = getattr(backbone, "feature_stride", getattr(backbone, "stride", 4))   # heatmaps on the feature grid
        self.input_multiple = getattr(backbone, "input_multiple", 64)
        if self.freeze_backbone:
            for name, p in self.backbone.named_parameters():
                p.requires_grad_(name.startswith("feature_proj"))
        self.offset_index = None          # PoseNet's offset head kept: its channels in (x, y) per joint
        self.last_offsets: torch.Tensor | None = None
        if offsets:
            head_ = backbone.net.heads["offsets"]
            head_.requires_grad_(False)                     # no loss trains it
            j = head_.out_channels // 2                     # PoseNet's layout: J y-offsets, then J x-offsets
            self.offset_index = [c for k in range(j) for c in (j + k, k)]
        self.joint_prior = bool(joint_prior)
        if self.joint_prior:
            backbone.net.heads["heatmaps"].requires_grad_(False)      # no loss trains it

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def forward(self, image: torch.Tensor, batch: dict | None = None, loss_fn=None):
        """The backbone's per-stack predictions; with ``loss_fn``, ``loss_fn(self, image, batch)``
        instead (the training loss runs inside forward so that DDP sees it and syncs gradients)."""
        if loss_fn is not None:
            return loss_fn(self, image, batch)
        return self.backbone(image)

    def export_forward(self, image: torch.Tensor) -> torch.Tensor:
        """What ONNX export records (the loop stays in PyTorch): the features the LSTM reads,
        followed, when the backbone keeps PoseNet's short-range offset head, by its 2J offsets
        (joint j's (x, y) offset from each cell's centre, input px, at channels C + 2j, C + 2j + 1):
        (B, C [+ 2J], H, W)."""
        feats = self.features(image)
        if self.offset_index is None:
            return feats
        return torch.cat([feats, self.last_offsets], 1)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, C [+ J], S/s, S/s): all stacks' features concatenated (and
        PoseNet's J joint probabilities with ``joint_prior``)."""
        frozen = self.freeze_backbone and getattr(self.backbone, "feature_proj", None) is None
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            out = self.last_outputs = self.backbone(image)
            if self.offset_index is not None:
                self.last_offsets = out["offsets"][:, self.offset_index].detach()
            prior = [torch.sigmoid(out["heatmaps"]).detach()] if self.joint_prior else []
            return torch.cat(list(self.backbone.last_features) + prior, 1)

    def ae_maps(self) -> torch.Tensor:
        """The AE backbone's last-stack prediction of the last :meth:`features` call, on the
        features' grid: (B, J + J*D, H, W), J heatmaps then J*D tags (D = ``ae_tag_dim``); a
        ValueError for a backbone without an AE head."""
        if self.ae_tag_dim is None or self.last_outputs is None:
            raise ValueError("needs an AE backbone (a stacked hourglass with its heatmap and tag head) "
                             "and a features() call first")
        from ..common import resample_maps
        pred = self.last_outputs[-1]
        size = tuple(self.backbone.last_features[-1].shape[-2:])
        if tuple(pred.shape[-2:]) == size:
            return pred
        ratio = pred.shape[-1] / size[1]
        return torch.stack([resample_maps(p, size, ratio) for p in pred])

    def load_init_state(self, state_dict: dict, source: str = "init_from") -> None:
        """Initialise the backbone from an AE checkpoint's model weights."""
        try:
            missing, unexpected = self.backbone.load_state_dict(state_dict, strict=False)
        except RuntimeError as e:
            raise ValueError(f"{source}: its weights do not fit model.backbone "
                             f"({str(e).strip().splitlines()[0]})") from None
        missing = [k for k in missing if not k.startswith("feature_proj")]   # new, trained here
        if missing or unexpected:
            raise ValueError(f"{source}: its weights do not fit model.backbone "
                             f"(missing {missing[:3]}, unexpected {list(unexpected)[:3]})")
