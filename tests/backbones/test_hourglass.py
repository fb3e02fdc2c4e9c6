import pytest
import torch
from torch import nn

from posegroup.backbones.hourglass import CONFIGS, Hourglass, StackedHourglass, hourglass_from_config

torch.set_num_threads(1)


def _tiny(**kw):
    args = dict(num_stacks=2, depth=2, base_width=8, width_increase=4, stem_width=4)
    args.update(kw)
    return StackedHourglass(5, **args)


def test_output_shapes_and_features():
    torch.manual_seed(0)
    net = _tiny()
    assert net.input_multiple == 16
    out = net(torch.randn(2, 3, 32, 48))
    assert isinstance(out, list) and len(out) == 2
    for o in out:
        assert o.shape == (2, 5, 8, 12)
    assert len(net.last_features) == 2
    assert all(f.shape == (2, 8, 8, 12) for f in net.last_features)
    assert net.features is net.last_features


def test_feature_channels_projection():
    net = _tiny(feature_channels=6, num_stacks=3)
    out = net(torch.randn(1, 3, 16, 16))
    assert len(out) == 3
    assert [f.shape for f in net.last_features] == [torch.Size([1, 6, 4, 4])] * 3


@pytest.mark.parametrize("block", ["conv3x3", "residual"])
def test_blocks_and_backward(block):
    torch.manual_seed(0)
    net = _tiny(block=block, batch_norm=block == "residual")
    out = net(torch.randn(2, 3, 16, 16))
    sum(o.square().sum() for o in out).backward()
    assert net.stem[0].conv.weight.grad is not None
    assert torch.isfinite(net.stem[0].conv.weight.grad).all()


def test_initial_predictions_small():
    torch.manual_seed(0)
    net = _tiny()
    for h in net.heads:
        assert torch.all(h.bias == 0)
    out = net(torch.randn(1, 3, 32, 32))
    assert out[0].abs().max() < 0.1


def test_bad_input_size():
    net = _tiny()
    with pytest.raises(ValueError, match="multiples of 16"):
        net(torch.randn(1, 3, 24, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="block"):
        StackedHourglass(3, block="dense")


def test_next_stack_uses_previous_prediction():
    # with the prediction projection of stack 1 zeroed and then set, stack 2's output changes
    torch.manual_seed(0)
    net = _tiny()
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        a = net(x)[1].clone()
        net.merge_preds[0].weight.add_(1.0)
        b = net(x)[1]
        net.merge_preds[0].weight.sub_(1.0)
    assert not torch.allclose(a, b)


def _level_widths(hg: Hourglass):
    widths = []
    while isinstance(hg, Hourglass):
        widths.append(hg.up1.conv.in_channels)
        inner = hg.low1.conv.out_channels
        hg = hg.low2
    widths.append(inner)
    return widths


def test_paper_config_widths():
    # build on the meta device: no memory, only structure
    with torch.device("meta"):
        net = hourglass_from_config("ae_paper", 34)
    assert net.num_stacks == 4 and net.depth == 4 and net.input_multiple == 64
    assert _level_widths(net.stacks[0][0]) == [256, 384, 512, 640, 768]
    assert all(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in (net.stacks[0][0].up1.conv,))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert net.heads[0].out_channels == 34


def test_config_from_dict_and_errors():
    net = hourglass_from_config({"name": "tiny", "num_stacks": 1}, 7)
    assert net.num_stacks == 1 and net.depth == CONFIGS["tiny"]["depth"]
    out = net(torch.randn(1, 3, 128, 128))
    assert out[0].shape == (1, 7, 32, 32)
    with pytest.raises(ValueError, match="unknown hourglass config"):
        hourglass_from_config("huge", 7)
    with pytest.raises(ValueError, match="unknown hourglass option"):
        hourglass_from_config({"depht": 3}, 7)


@pytest.mark.parametrize("stacks", [1, 2])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_output_stride_2(stacks, batch_norm):
    """output_stride 2: predictions on a grid twice as fine, features still at stride 4; every
    stack's prediction gets gradient; the stride-4 network has no upsampling weights (its
    checkpoints keep their keys)."""
    torch.manual_seed(0)
    net = _tiny(num_stacks=stacks, output_stride=2, batch_norm=batch_norm)
    assert net.stride == 2 and net.feature_stride == 4 and StackedHourglass.stride == 4
    out = net(torch.randn(2, 3, 32, 48))
    assert [o.shape for o in out] == [torch.Size([2, 5, 16, 24])] * stacks
    assert all(f.shape == (2, 8, 8, 12) for f in net.last_features)
    sum(o.square().mean() for o in out).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert not any("upsample" in k for k in _tiny().state_dict())
    assert _tiny().stride == 4


def test_output_stride_from_config_and_errors():
    net = hourglass_from_config({"name": "tiny", "num_stacks": 1, "output_stride": 2}, 7)
    assert net(torch.randn(1, 3, 64, 64))[0].shape == (1, 7, 32, 32)
    with pytest.raises(ValueError, match="output_stride must be one of"):
        hourglass_from_config({"name": "tiny", "output_stride": 8}, 7)


@pytest.mark.parametrize("output_stride", [2, 4])
@pytest.mark.parametrize("stacks", [1, 2])
def test_head_split_groups_own_read_out(output_stride, stacks):
    """head_split [2, 3]: the same output layout (5 maps); the last stack's channels 0-1 get no
    gradient through its group-1 read-out layers and channels 2-4 none through its first head's,
    while the shared hourglass is reached from both groups (earlier stacks' read-outs feed the
    next stack through merge_preds, so only the last stack's are separate)."""
    torch.manual_seed(0)
    net = _tiny(num_stacks=stacks, output_stride=output_stride, head_split=[2, 3])
    side = 16 // output_stride * 2
    x = torch.randn(2, 3, 32, 32)
    out = net(x)
    assert [o.shape for o in out] == [torch.Size([2, 5, side, side])] * stacks
    last = stacks - 1
    first = [p for n, p in net.named_parameters() if n.startswith((f"heads.{last}.", f"upsample.{last}."))]
    second = [p for n, p in net.named_parameters() if n.startswith(f"branches.{last}.")]
    shared = [p for n, p in net.named_parameters() if n.startswith("stacks.0.")]
    assert first and second and shared
    for group, own, other in ((slice(0, 2), first, second), (slice(2, 5), second, first)):
        net.zero_grad(set_to_none=True)
        net(x)[-1][:, group].square().sum().backward()
        assert all(p.grad is None or p.grad.abs().sum() == 0 for p in other)
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in own)
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in shared)


def test_head_split_from_config_and_errors():
    net = hourglass_from_config({"name": "tiny", "num_stacks": 1, "output_stride": 2, "head_split": [3, 4]}, 7)
    assert net.head_split == [3, 4]
    assert net(torch.randn(1, 3, 64, 64))[0].shape == (1, 7, 32, 32)
    # no split: the checkpoint keys of a network without the option
    plain = hourglass_from_config({"name": "tiny", "num_stacks": 1, "output_stride": 2}, 7)
    assert plain.branches is None and set(plain.state_dict()) < set(net.state_dict())
    for bad in ([3, 3], [7, 0], [], 7, [3.5, 3.5], ["3", "4"], [True, 6]):
        with pytest.raises(ValueError, match="head_split"):
            hourglass_from_config({"name": "tiny", "head_split": bad}, 7)
