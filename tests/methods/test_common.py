"""posegroup.methods.common.evaluating: eval mode and no gradients inside, the mode restored."""
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
