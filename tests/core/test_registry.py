from medverse.core import registry
from medverse.core.errors import ConfigError


def test_totalsegmentator_label_map_has_named_coloured_organs() -> None:
    labels = registry.label_map("totalseg_total")
    assert len(labels) == 117
    assert labels[5].name == "liver" and labels[1].name == "spleen"
    assert all(0 <= c <= 255 for info in labels.values() for c in info.color)


def test_generated_colours_are_stable_and_distinct_for_neighbours() -> None:
    a = registry.label_color(40, "vertebrae_L1")
    assert a == registry.label_color(40, "vertebrae_L1")
    assert a != registry.label_color(41, "vertebrae_T12")


def test_unknown_names_give_config_errors_listing_the_choices() -> None:
    for lookup in (registry.label_map, registry.model_preset, registry.task):
        try:
            lookup("nope")
        except ConfigError as error:
            assert "known:" in str(error)
        else:
            raise AssertionError(f"{lookup.__name__} accepted an unknown name")
