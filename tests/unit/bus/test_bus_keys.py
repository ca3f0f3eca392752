"""Each site's Redis keys and channels are its own: named after its ``cluster.redis_namespace``
or its name, encoded so that no name's keys match another's (see also the two-site test in
``tests/integration/test_bus_redis.py``)."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

import pytest

from safewatch.bus.redis_streams import BusKeys
from safewatch.config.site import SiteConfig
from safewatch.errors import ConfigError


def site(**document: Any) -> SiteConfig:
    cameras = {"gate": {"source": "a.mp4", "models": ["coco"]}}
    return SiteConfig.model_validate(
        {"models": {"coco": {"path": "m.onnx"}}, "cameras": cameras, **document}
    )


def test_the_keys_are_the_site_names_unless_the_namespace_is_set() -> None:
    named = BusKeys.for_site(site(site={"name": "Plant A"}))
    assert named.incidents == "safewatch:Plant%20A:incidents"
    assert named.live_channel("gate") == "safewatch:Plant%20A:live:gate"
    set_ = BusKeys.for_site(site(site={"name": "Plant A"}, cluster={"redis_namespace": "plant-a"}))
    assert set_.incidents == "safewatch:plant-a:incidents"


@pytest.mark.parametrize("namespace", ["plant:live", "pl*nt", "a b", ""])
def test_a_namespace_that_is_not_a_plain_word_is_refused_in_the_site_file(namespace: str) -> None:
    with pytest.raises(ValueError, match="redis_namespace"):
        site(cluster={"redis_namespace": namespace})


@pytest.mark.parametrize(
    ("mine", "other"),
    [("plant", "plant2"), ("p*", "plant"), ("p?ant", "plant"), ("[pq]lant", "plant"),
     ("p\\*", "p*"), ("plant:live", "plant"), ("a%41", "aA")],
)  # fmt: skip
def test_no_sites_pattern_matches_another_sites_channel(mine: str, other: str) -> None:
    """Redis's glob rules are fnmatch's for these characters; ``:`` and ``%`` are encoded, so
    one name's keys are never a prefix of another's."""
    a, b = BusKeys.for_name(mine), BusKeys.for_name(other)
    assert a.incidents != b.incidents
    assert fnmatchcase(a.live_channel("gate"), a.live_pattern)
    assert not fnmatchcase(b.live_channel("gate"), a.live_pattern)
    assert not fnmatchcase(a.live_channel("gate"), b.live_pattern)


def test_an_empty_site_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="Redis namespace"):
        BusKeys.for_site(site(site={"name": ""}))
