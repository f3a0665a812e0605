"""``--set KEY=VALUE`` parsing."""

import pytest

from pipelines.sampler_options import parse_options


def test_values_are_typed():
    opts = parse_options(["zeta=10", "eta=0.5", "discrepancy=false", "gamma=none", "eps-source=refined"])
    assert opts == {"zeta": 10, "eta": 0.5, "discrepancy": False, "gamma": None, "eps_source": "refined"}
    assert isinstance(opts["zeta"], int) and isinstance(opts["eta"], float)
    assert parse_options(None) == {} and parse_options([]) == {}


@pytest.mark.parametrize("item", ["zeta", "=3", "1x=2"])
def test_malformed_items_are_refused(item):
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_options([item])
