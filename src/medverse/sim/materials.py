"""Tissue materials: a cited table of stiffness and density, overridable, with validated ranges."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum

from medverse.core.errors import ConfigError

# Accepted ranges. Young's modulus spans soft fat (~1 kPa) to stiff test materials (steel in
# the beam tests); Poisson's ratio stops below 0.5 because linear tetrahedra lock volumetrically
# as the material approaches incompressibility; density covers fat to bone.
E_RANGE_PA = (10.0, 5.0e11)
NU_RANGE = (0.0, 0.49)
RHO_RANGE_KG_M3 = (100.0, 20000.0)


class Tissue(StrEnum):
    """Tissues with a literature material in :data:`TISSUES`."""

    LIVER = "liver"
    KIDNEY = "kidney"
    SPLEEN = "spleen"
    PANCREAS = "pancreas"
    MUSCLE = "muscle"
    FAT = "fat"


@dataclass(frozen=True)
class Material:
    """Linear-elastic material constants in SI units, checked on construction.

    Attributes:
        youngs_modulus_pa: Young's modulus E in pascals.
        poisson_ratio: Poisson's ratio nu (dimensionless).
        density_kg_m3: Mass density rho in kg/m^3.
        source: Where the values come from (a citation, or "override").

    Raises:
        ConfigError: If a value is outside its accepted range (the message names the field).
    """

    youngs_modulus_pa: float
    poisson_ratio: float
    density_kg_m3: float
    source: str = "override"

    def __post_init__(self) -> None:
        _check("youngs_modulus_pa", self.youngs_modulus_pa, E_RANGE_PA)
        _check("poisson_ratio", self.poisson_ratio, NU_RANGE)
        _check("density_kg_m3", self.density_kg_m3, RHO_RANGE_KG_M3)

    @property
    def lame(self) -> tuple[float, float]:
        """The Lame parameters (mu, lambda) in pascals."""
        e, nu = self.youngs_modulus_pa, self.poisson_ratio
        return e / (2.0 * (1.0 + nu)), e * nu / ((1.0 + nu) * (1.0 - 2.0 * nu))

    def with_overrides(
        self,
        *,
        youngs_modulus_pa: float | None = None,
        poisson_ratio: float | None = None,
        density_kg_m3: float | None = None,
    ) -> Material:
        """Return a copy with the given values replaced (validated again)."""
        changes = {
            k: v
            for k, v in (
                ("youngs_modulus_pa", youngs_modulus_pa),
                ("poisson_ratio", poisson_ratio),
                ("density_kg_m3", density_kg_m3),
            )
            if v is not None
        }
        if not changes:
            return self
        return replace(self, **changes, source=f"{self.source}; overridden: {', '.join(changes)}")


def _check(field: str, value: float, bounds: tuple[float, float]) -> None:
    low, high = bounds
    if not low <= float(value) <= high:  # also refuses NaN
        raise ConfigError(
            f"material {field} = {value} is outside the accepted range [{low}, {high}]"
        )


# Densities: IT'IS Foundation tissue properties database v4.1 (Hasgall et al., 2022).
# Stiffness: small-strain Young's moduli from in vivo elastography of healthy tissue (E = 3G for
# a nearly incompressible tissue), representative of the ranges those studies report. Poisson's
# ratio 0.45 for all soft tissues: they are nearly incompressible (nu ~ 0.49), but linear
# tetrahedra lock as nu -> 0.5, so 0.45 is the usual simulation compromise. The citations give
# author, journal and year; the values were not re-checked against the papers in this change.
_ITIS = "density: IT'IS tissue database v4.1 (Hasgall et al. 2022)"
TISSUES: dict[Tissue, Material] = {
    Tissue.LIVER: Material(
        5.5e3,
        0.45,
        1079.0,
        "E ~ 5.5 kPa: transient elastography of healthy liver (Sandrin et al., Ultrasound Med "
        f"Biol 2003); {_ITIS}",
    ),
    Tissue.SPLEEN: Material(
        1.1e4,
        0.45,
        1089.0,
        f"E = 3G, G ~ 3.6 kPa: MR elastography of the spleen (Talwalkar et al., AJR 2009); {_ITIS}",
    ),
    Tissue.KIDNEY: Material(
        1.2e4,
        0.45,
        1066.0,
        "E = 3G, G ~ 4 kPa: MR elastography of healthy kidneys (Rouviere et al., J Magn Reson "
        f"Imaging 2011); {_ITIS}",
    ),
    Tissue.PANCREAS: Material(
        3.3e3,
        0.45,
        1087.0,
        "E = 3G, G ~ 1.1 kPa: MR elastography of healthy pancreas (Shi et al., J Magn Reson "
        f"Imaging 2015); {_ITIS}",
    ),
    Tissue.MUSCLE: Material(
        1.2e4,
        0.45,
        1090.0,
        "E = 3G, G ~ 4 kPa: relaxed skeletal muscle by supersonic shear imaging (Gennisson et "
        f"al., Ultrasound Med Biol 2010); {_ITIS}",
    ),
    Tissue.FAT: Material(
        3.25e3,
        0.45,
        911.0,
        "E ~ 3.25 kPa: fat by indentation (Samani et al., Phys Med Biol 2007); " + _ITIS,
    ),
}

# Structure names (registry label names) -> tissue, by pattern.
_STRUCTURE_TISSUE = (
    (re.compile(r"^liver$"), Tissue.LIVER),
    (re.compile(r"^spleen$"), Tissue.SPLEEN),
    (re.compile(r"^kidney_(left|right)$"), Tissue.KIDNEY),
    (re.compile(r"^pancreas$"), Tissue.PANCREAS),
    (re.compile(r"^(autochthon|iliopsoas|gluteus_\w+)_(left|right)$"), Tissue.MUSCLE),
    (re.compile(r"^(subcutaneous_fat|fat)$"), Tissue.FAT),
)


def tissue_for_structure(name: str) -> Tissue:
    """Return the tissue of a structure name from the label registry (``kidney_left`` -> kidney).

    Raises:
        ConfigError: If the structure has no tissue in the table (pass one explicitly).
    """
    for pattern, tissue in _STRUCTURE_TISSUE:
        if pattern.match(name):
            return tissue
    known = ", ".join(t.value for t in Tissue)
    raise ConfigError(f"no tissue known for structure {name!r}; choose one of: {known}")


def material_for(tissue: Tissue | str) -> Material:
    """Return the table material of ``tissue``.

    Raises:
        ConfigError: If the tissue is not in the table.
    """
    try:
        return TISSUES[Tissue(tissue)]
    except ValueError:
        known = ", ".join(t.value for t in Tissue)
        raise ConfigError(f"unknown tissue {tissue!r}; known: {known}") from None
