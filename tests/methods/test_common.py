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


def _gaussian(centres, size: int, sigma: float) -> np.ndarray:
    """(len(centres), size, size) maps of a Gaussian of std ``sigma`` cells at each (x, y) centre
    (cell (i, j) has centre (j + 0.5, i + 0.5))."""
    g = np.arange(size) + 0.5
    return np.stack([np.exp(-((g[None, :] - cx) ** 2 + (g[:, None] - cy) ** 2) / (2 * sigma ** 2))
                     for cx, cy in centres])


def test_dark_subpixel_exact_on_gaussians_and_per_map():
    """A Gaussian (std 2) smoothed by a Gaussian (std 1) is a Gaussian of std sqrt(5) at the same
    centre: sampling aliases it by ~exp(-2 pi^2) ~ 3e-9 and scipy's kernel, cut at 4 std,
    drops ~6e-5 of its mass symmetrically, so the log-parabola puts the peak within 1e-3 cells.
    Peaks lie >= 12 cells (5.4 sqrt(5)) from the border, out of reach of its reflection. Each
    map is smoothed alone (smoothing across maps, or a map taken for another, moves the peaks by
    up to 8 cells): some maps are asked for, out of order, one twice."""
    from posegroup.methods.common import subpixel_offsets
    rng = np.random.default_rng(0)
    centres = rng.uniform(12, 20, size=(6, 2))
    maps = _gaussian(centres, 32, 2.0)
    order = np.array([4, 1, 5, 1])
    cells = np.floor(centres[order]).astype(int)
    dx, dy = subpixel_offsets(maps, order, cells[:, 1], cells[:, 0], "dark", blur=1.0)
    np.testing.assert_allclose(np.stack([cells[:, 0] + 0.5 + dx, cells[:, 1] + 0.5 + dy], 1), centres[order], atol=1e-3)
    with pytest.raises(ValueError, match="blur"):
        subpixel_offsets(maps, [0], [1], [1], "dark", blur=0.0)


def test_dark_subpixel_steadier_than_quadratic_on_ragged_peaks():
    """The recurrent head's per-person maps are broad and ragged (docs/recurrent.md); on
    Gaussians (std 2) times 20% multiplicative noise the 3-cell log-parabola follows the noise,
    the smoothed fit much less: mean error over 300 peaks at most 0.6 of the quadratic's."""
    from posegroup.methods.common import subpixel_offsets
    rng = np.random.default_rng(1)
    centres = rng.uniform(12, 20, size=(300, 2))
    maps = _gaussian(centres, 32, 2.0) * rng.uniform(0.8, 1.2, size=(300, 32, 32))
    y, x = np.unravel_index(maps.reshape(300, -1).argmax(1), (32, 32))
    err = {}
    for method in ("quadratic", "dark"):
        dx, dy = subpixel_offsets(maps, np.arange(300), y, x, method)
        err[method] = np.hypot(x + 0.5 + dx - centres[:, 0], y + 0.5 + dy - centres[:, 1]).mean()
    assert err["dark"] <= 0.6 * err["quadratic"], err
