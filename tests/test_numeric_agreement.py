"""The two closeness measures the tools and the benchmark print."""
import pytest
import torch

from repvit_plugins.bench.numeric_agreement import embedding_error, relative_error


def test_embedding_and_relative_error_values():
    reference = torch.tensor([1.0, -1.0, 1.0, -1.0])
    ours = reference + torch.tensor([0.2, 0.0, 0.0, -0.2])
    assert embedding_error(ours, reference) == pytest.approx(0.1 / reference.std().item())
    assert relative_error(ours, reference) == pytest.approx(0.2)
    assert embedding_error(reference.numpy(), reference) == 0.0  # arrays work too
    assert relative_error(torch.ones(3), torch.zeros(3)) > 1e11  # a zero reference does not divide by zero
