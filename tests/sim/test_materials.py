"""The tissue table: cited, in range, overridable with validation."""

from __future__ import annotations

import pytest

from medverse.core.errors import ConfigError
from medverse.sim.materials import TISSUES, Material, Tissue, material_for, tissue_for_structure


def test_every_tissue_is_cited_and_soft() -> None:
    for tissue in Tissue:
        material = TISSUES[tissue]
        assert 1e3 <= material.youngs_modulus_pa <= 1e5  # soft tissue: kPa range
        assert 900 <= material.density_kg_m3 <= 1100
        assert "et al" in material.source and "IT'IS" in material.source
        mu, lam = material.lame
        assert mu > 0 and lam > 0


def test_structure_names_map_to_tissues() -> None:
    assert tissue_for_structure("kidney_left") is Tissue.KIDNEY
    assert tissue_for_structure("liver") is Tissue.LIVER
    assert tissue_for_structure("iliopsoas_right") is Tissue.MUSCLE
    with pytest.raises(ConfigError, match="no tissue known for structure 'aorta'"):
        tissue_for_structure("aorta")


def test_override_is_validated_and_recorded() -> None:
    stiff = material_for("liver").with_overrides(youngs_modulus_pa=8000.0)
    assert stiff.youngs_modulus_pa == 8000.0 and "overridden: youngs_modulus_pa" in stiff.source
    with pytest.raises(ConfigError, match=r"poisson_ratio = 0\.5 is outside"):
        material_for("liver").with_overrides(poisson_ratio=0.5)
    with pytest.raises(ConfigError, match="youngs_modulus_pa = -1"):
        Material(-1.0, 0.3, 1000.0)
    with pytest.raises(ConfigError, match="density_kg_m3 = nan"):
        Material(1e4, 0.3, float("nan"))
    with pytest.raises(ConfigError, match="unknown tissue 'bone'"):
        material_for("bone")
