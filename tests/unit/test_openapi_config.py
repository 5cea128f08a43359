"""`[openapi] regions`: the regions the OpenAPI calls go to, the old single `region` key still read."""
import pytest

from shipper import config
from shipper.config import ConfigError

SINKS = [{"type": "sqlite"}]


def openapi(table: dict):
    return config.from_dict({"openapi": table, "sinks": SINKS}, "cfg.toml").openapi


def test_regions_default_to_hangzhou_and_take_a_list_or_all():
    assert openapi({}).regions == ("cn-hangzhou",)
    assert openapi({"regions": ["cn-beijing", "ap-southeast-1"]}).regions == ("cn-beijing", "ap-southeast-1")
    assert openapi({"regions": ["all"]}).regions == ("all",)


def test_the_old_region_key_is_read_as_a_one_region_list():
    assert openapi({"region": "cn-shanghai", "ecs_endpoint": "127.0.0.1:1"}).regions == ("cn-shanghai",)


@pytest.mark.parametrize("table, expected", [
    ({"region": "cn-shanghai", "regions": ["cn-beijing"]},
     "cfg.toml: [openapi]: both `region` and `regions` are set: keep `regions` only"),
    ({"region": ["cn-shanghai"]}, "cfg.toml: [openapi]: `region` must be a string, got ['cn-shanghai']"),
    ({"region": "Hangzhou"}, "cfg.toml: [openapi]: `region`: 'Hangzhou' is not a region id"),
    ({"regions": "cn-hangzhou"}, "cfg.toml: [openapi]: `regions` must be a list of strings, got 'cn-hangzhou'"),
    ({"regions": []}, "cfg.toml: [openapi]: `regions` must name at least one region"),
    ({"regions": ["all", "cn-hangzhou"]}, "cfg.toml: [openapi]: `regions` = [\"all\"] stands alone"),
    ({"regions": ["cn-hangzhou", "cn-hangzhou"]}, "cfg.toml: [openapi]: `regions` lists a region twice"),
    ({"regions": ["cn hangzhou"]}, "cfg.toml: [openapi]: `regions`: 'cn hangzhou' is not a region id"),
])
def test_bad_regions_are_one_line_naming_the_key(table, expected):
    with pytest.raises(ConfigError) as caught:
        openapi(table)
    assert str(caught.value).startswith(expected) and "\n" not in str(caught.value)
