"""Unit tests of discovery: block lists, timestep argument, and teaching it a new block family."""

import pytest
import torch
from torch import nn

from taylorseer import BlockSpec, TaylorSeerConfig, apply_taylorseer, register_block_spec
from taylorseer.wiring import families
from taylorseer.wiring.discovery import cached_children, discover_blocks, timestep_argument

pytestmark = pytest.mark.unit


class OddBlock(nn.Module):
    """A block whose children discovery does not know by name."""

    def __init__(self) -> None:
        super().__init__()
        self.mixer = nn.Linear(4, 4)
        self.channel = nn.Linear(4, 4)

    def forward(self, x, t):
        x = x + self.mixer(x) * t[:, None, None]
        return x + self.channel(x)


class OddModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layers = nn.ModuleList(OddBlock() for _ in range(2))

    def forward(self, x, timestep):
        for layer in self.layers:
            x = layer(x, timestep)
        return x


@pytest.fixture
def restore_specs():
    saved = dict(families.BLOCK_SPECS)
    yield
    families.BLOCK_SPECS.clear()
    families.BLOCK_SPECS.update(saved)


def test_unknown_children_raise_pointing_to_register_block_spec():
    with pytest.raises(ValueError, match=r"OddBlock.*register_block_spec"):
        apply_taylorseer(OddModel(), TaylorSeerConfig(granularity="module"))


def test_a_registered_block_spec_is_used_for_its_class(restore_specs):
    register_block_spec(OddBlock, BlockSpec(cached=("mixer", "channel"), inputs=("x",)))
    model = OddModel()
    blocks = discover_blocks(model)
    assert [path for path, _, _ in cached_children(blocks)] == [
        "layers.0.mixer", "layers.0.channel", "layers.1.mixer", "layers.1.channel",
    ]  # fmt: skip
    x = torch.randn(1, 3, 4)
    with apply_taylorseer(model, TaylorSeerConfig(granularity="module", interval=1)) as handle:
        cached = [model(x, torch.tensor([t])) for t in (0.9, 0.5)]
        assert handle.stats["cached_modules"] == 4
    torch.testing.assert_close(cached[1], model(x, torch.tensor([0.5])), rtol=0, atol=0)


def test_register_block_spec_refuses_what_is_not_a_class_or_a_spec(restore_specs):
    with pytest.raises(TypeError, match="block_class"):
        register_block_spec(3, BlockSpec(cached=("attn",)))
    with pytest.raises(TypeError, match="BlockSpec"):
        register_block_spec("OddBlock", {"cached": ("attn",)})
    with pytest.raises(ValueError, match="BlockSpec.cached must be a tuple of names"):
        BlockSpec(cached="attn")
    with pytest.raises(ValueError, match="inputs must name at least one"):
        BlockSpec(cached=("attn",), inputs=())


def test_timestep_argument_by_name_and_position():
    argument = timestep_argument(OddModel())
    assert (argument.name, argument.index) == ("timestep", 1)
    assert argument.get((None, 5), {}) == 5 and argument.get((), {"timestep": 7}) == 7
