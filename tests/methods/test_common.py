"""posegroup.methods.common.evaluating: eval mode and no gradients inside, the mode restored."""
import numpy as np
import pytest
import torch

from posegroup.methods.common import evaluating


@pytest.mark.parametrize("training", [True, False])
def test_evaluating_restores_mode(training):
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    net.train(training)
    with evaluating(net):
        assert not net.training and not net[1].training
        y = net(torch.ones(1, 2))
        assert not y.requires_grad
    assert net.training is training and net[1].training is training
    with pytest.raises(RuntimeError):
        with evaluating(net):
            raise RuntimeError("boom")
    assert net.training is training
    assert net(torch.ones(1, 2)).requires_grad


def test_network_passes_ratios_and_a_model_without_parameters():
    """Each pass's ratio is its input px per scale-1 input px (mirrored passes repeat it), every
    map lands on the scale-1 grid, and a model without parameters (a wrapped ONNX graph) runs
    on the CPU."""
    import numpy as np
    from posegroup.methods.common import last_stack, network_passes

    class Ones(torch.nn.Module):        # stride 4, no parameters
        def forward(self, x):
            return [torch.ones(x.shape[0], 2, x.shape[2] // 4, x.shape[3] // 4)]

    image = np.zeros((100, 200, 3), np.uint8)
    maps, grid, factor1, stride, ratios = network_passes(Ones(), image, 128, (1.0, 2.0, 0.5), True, last_stack)
    assert len(maps) == 6 and ratios == [1.0, 1.0, 2.0, 2.0, 0.5, 0.5]
    assert (grid, factor1, stride) == ((16, 32), 0.64, 4)
    assert all(tuple(m.shape) == (2, 16, 32) for m in maps)


def test_place_by_offsets_moves_found_joints_to_cell_centre_plus_offset():
    from posegroup.methods.common import place_by_offsets
    offsets = np.zeros((2, 2, 3, 4))
    offsets[1, 0, 2, 3], offsets[1, 1, 2, 3] = 0.3, -0.2        # joint 1, cell (row 2, col 3)
    poses = np.array([[[1.2, 0.7, 0.5], [3.9, 2.1, 0.8]], [[9.0, 9.0, 0.0], [-1.0, 5.0, 0.4]]])
    got = place_by_offsets(poses, offsets)
    np.testing.assert_allclose(got[0, 0], [1.5, 0.5, 0.5])       # its cell's centre (zero offset)
    np.testing.assert_allclose(got[0, 1], [3.8, 2.3, 0.8])       # centre (3.5, 2.5) + (0.3, -0.2)
    np.testing.assert_allclose(got[1, 0], poses[1, 0])           # missing (score 0): unchanged
    np.testing.assert_allclose(got[1, 1], [0.5, 2.5, 0.4])       # outside the grid: the nearest cell
    assert place_by_offsets(np.zeros((0, 2, 3)), offsets).shape == (0, 2, 3)
