"""HVAC engineering calculations for the SizeWise demo service.

Pure, typed functions (no I/O) in IP units, with SI conversions in the results:

* round duct sizing by the equal-friction method (Darcy-Weisbach + Colebrook, standard air,
  diameter solved by bisection, rounded up to the next standard size);
* rectangular duct sizing with the Huebscher equivalent diameter;
* straight-duct pressure drop (Darcy-Weisbach, Colebrook or Swamee-Jain) plus fitting losses;
* sensible heat (Q = 1.08 x cfm x dT, and its inverse) and a simple U.A.dT envelope load.

References: ASHRAE Handbook - Fundamentals, ch. "Duct Design" (Darcy-Weisbach in IP form,
Colebrook, roughness categories, Huebscher equivalent diameter, friction chart for
rho = 0.075 lb/ft3 and e = 0.0003 ft); Swamee & Jain (1976); Huebscher (1948).
See docs/hvac.md.

The request models are the public contract of the HTTP layer: each carries a literal
``calculation_type`` discriminator; ``compute`` dispatches on it and returns a JSON-serialisable dict
whose keys carry their units.  Physically impossible combinations found while solving raise
``ValueError`` with a readable message.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

__all__ = [
    "CALCULATION_TYPES",
    "MATERIAL_ROUGHNESS_FT",
    "STANDARD_ROUND_SIZES_IN",
    "CalculationRequest",
    "EnvelopeSurface",
    "HeatLoadRequest",
    "PressureDropRequest",
    "RectangularDuctRequest",
    "RoundDuctRequest",
    "airflow_for_sensible_load",
    "colebrook_friction_factor",
    "compute",
    "envelope_load_btuh",
    "friction_factor",
    "friction_rate_in_wg_per_100ft",
    "huebscher_equivalent_diameter",
    "hydraulic_diameter",
    "invalid_sample",
    "next_standard_round_size",
    "reynolds_number",
    "sample_request",
    "sensible_heat_btuh",
    "solve_round_diameter",
    "swamee_jain_friction_factor",
    "velocity_pressure_in_wg",
]

# --------------------------------------------------------------------------------------------------
# Constants (standard air, unit conversions)
# --------------------------------------------------------------------------------------------------

#: Standard air density, lb/ft3 (ASHRAE: 68 F, 29.92 in. Hg, dry).
AIR_DENSITY_LB_FT3: Final = 0.075
#: Standard air dynamic viscosity, lb/(ft.s) (ASHRAE Fundamentals, Duct Design: 1.21e-5).
AIR_VISCOSITY_LB_FT_S: Final = 1.21e-5
#: Kinematic viscosity of standard air, ft2/s.
AIR_KINEMATIC_VISCOSITY_FT2_S: Final = AIR_VISCOSITY_LB_FT_S / AIR_DENSITY_LB_FT3
#: Sensible heat factor, Btu/(h.cfm.F) = 60 min/h x 0.075 lb/ft3 x 0.24 Btu/(lb.F).
SENSIBLE_FACTOR: Final = 1.08
#: Constant of the IP velocity-pressure relation p_v = rho (V / 1097)^2, V in fpm, p_v in in. w.g.
VP_CONSTANT: Final = 1097.0

PA_PER_IN_WG: Final = 249.0889
L_S_PER_CFM: Final = 0.471947443
M_S_PER_FPM: Final = 0.00508
MM_PER_IN: Final = 25.4
W_PER_BTUH: Final = 0.29307107
M_PER_FT: Final = 0.3048

LAMINAR_RE: Final = 2300.0
TURBULENT_RE: Final = 4000.0
#: Above this the incompressible Darcy-Weisbach treatment (and any real duct system) is out of range.
MAX_VELOCITY_FPM: Final = 12_000.0
MAX_AIRFLOW_CFM: Final = 100_000.0
MAX_ASPECT_RATIO: Final = 8.0
MIN_DUCT_SIZE_IN: Final = 3

#: Absolute roughness, ft (ASHRAE Fundamentals, Duct Design, "Duct material roughness factors").
MATERIAL_ROUGHNESS_FT: Final[dict[str, float]] = {
    "pvc": 0.0001,  # smooth: PVC plastic pipe (0.01-0.05 mm)
    "aluminum": 0.00015,  # aluminum (0.04-0.06 mm)
    "stainless_steel": 0.00015,  # clean uncoated steel (0.05 mm)
    "galvanized_steel": 0.0003,  # medium smooth: galvanized, longitudinal seams (the chart value)
    "galvanized_spiral": 0.0003,  # spiral seam galvanized steel
    "hot_dip_galvanized": 0.0005,  # average: hot-dipped galvanized, transverse joints at 2.5 ft
    "fibrous_glass": 0.003,  # medium rough: rigid fibrous glass duct
    "flexible_duct": 0.01,  # rough: flexible duct, fabric and wire, fully extended
    "concrete": 0.01,  # rough: concrete (1.3-3.0 mm)
}

Material = Literal[
    "pvc",
    "aluminum",
    "stainless_steel",
    "galvanized_steel",
    "galvanized_spiral",
    "hot_dip_galvanized",
    "fibrous_glass",
    "flexible_duct",
    "concrete",
]
FrictionMethod = Literal["colebrook", "swamee_jain"]
SurfaceKind = Literal["wall", "window", "roof", "door", "floor", "skylight"]

#: Standard round duct sizes: 1-inch steps up to 20 in., 2-inch steps above.
STANDARD_ROUND_SIZES_IN: Final[tuple[int, ...]] = (
    *range(MIN_DUCT_SIZE_IN, 21),
    *range(22, 121, 2),
)

CALCULATION_TYPES: Final[tuple[str, ...]] = ("round_duct", "rectangular_duct", "pressure_drop", "heat_load")

Number = float | int
Result = dict[str, float | int | str]

# --------------------------------------------------------------------------------------------------
# Fluid mechanics
# --------------------------------------------------------------------------------------------------


def circle_area_ft2(diameter_in: float) -> float:
    """Cross-section area (ft2) of a round duct of the given diameter (in.)."""
    return math.pi * (diameter_in / 12.0) ** 2 / 4.0


def velocity_pressure_in_wg(velocity_fpm: float, density_lb_ft3: float = AIR_DENSITY_LB_FT3) -> float:
    """Velocity pressure p_v = rho (V/1097)^2, in. w.g. (V in fpm, rho in lb/ft3)."""
    return density_lb_ft3 * (velocity_fpm / VP_CONSTANT) ** 2


def reynolds_number(velocity_fpm: float, diameter_in: float) -> float:
    """Reynolds number for standard air, V in fpm and (hydraulic) diameter in inches (Re ~ 8.6 D V)."""
    return (velocity_fpm / 60.0) * (diameter_in / 12.0) / AIR_KINEMATIC_VISCOSITY_FT2_S


def swamee_jain_friction_factor(reynolds: float, relative_roughness: float) -> float:
    """Explicit Swamee-Jain (1976) approximation of the Colebrook Darcy friction factor."""
    if reynolds <= 0 or not math.isfinite(reynolds):
        raise ValueError(f"Reynolds number must be positive and finite, got {reynolds!r}")
    if relative_roughness < 0:
        raise ValueError(f"relative roughness must be >= 0, got {relative_roughness!r}")
    return 0.25 / math.log10(relative_roughness / 3.7 + 5.74 / reynolds**0.9) ** 2


def colebrook_friction_factor(
    reynolds: float, relative_roughness: float, *, tol: float = 1e-12, max_iter: int = 100
) -> float:
    """Darcy friction factor from the Colebrook equation, solved by fixed-point iteration.

    1/sqrt(f) = -2 log10( (e/D)/3.7 + 2.51 / (Re sqrt(f)) ), started from Swamee-Jain.
    """
    f0 = swamee_jain_friction_factor(reynolds, relative_roughness)
    x = 1.0 / math.sqrt(f0)
    for _ in range(max_iter):
        x_new = -2.0 * math.log10(relative_roughness / 3.7 + 2.51 * x / reynolds)
        if abs(x_new - x) <= tol * x_new:
            return 1.0 / x_new**2
        x = x_new
    raise ValueError(f"Colebrook iteration did not converge (Re={reynolds:g}, e/D={relative_roughness:g})")


def friction_factor(
    reynolds: float, relative_roughness: float, method: FrictionMethod = "colebrook"
) -> float:
    """Darcy friction factor: 64/Re when laminar (Re < 2300), else Colebrook or Swamee-Jain.

    The transitional zone (2300-4000) uses the turbulent relation, which is conservative.
    """
    if reynolds <= 0 or not math.isfinite(reynolds):
        raise ValueError(f"Reynolds number must be positive and finite, got {reynolds!r}")
    if reynolds < LAMINAR_RE:
        return 64.0 / reynolds
    if method == "colebrook":
        return colebrook_friction_factor(reynolds, relative_roughness)
    if method == "swamee_jain":
        return swamee_jain_friction_factor(reynolds, relative_roughness)
    raise ValueError(f"unknown friction factor method {method!r}")


def flow_regime(reynolds: float) -> str:
    if reynolds < LAMINAR_RE:
        return "laminar"
    if reynolds < TURBULENT_RE:
        return "transitional"
    return "turbulent"


def friction_rate_in_wg_per_100ft(
    airflow_cfm: float,
    diameter_in: float,
    roughness_ft: float = MATERIAL_ROUGHNESS_FT["galvanized_steel"],
    method: FrictionMethod = "colebrook",
) -> float:
    """Friction loss of a round duct, in. w.g. per 100 ft: dp = (12 f L / D) rho (V/1097)^2."""
    if airflow_cfm <= 0 or diameter_in <= 0:
        raise ValueError("airflow and diameter must be positive")
    velocity = airflow_cfm / circle_area_ft2(diameter_in)
    re = reynolds_number(velocity, diameter_in)
    f = friction_factor(re, roughness_ft / (diameter_in / 12.0), method)
    return 12.0 * f * 100.0 / diameter_in * velocity_pressure_in_wg(velocity)


def solve_round_diameter(
    airflow_cfm: float,
    friction_rate: float,
    roughness_ft: float = MATERIAL_ROUGHNESS_FT["galvanized_steel"],
    *,
    lo_in: float = 0.05,
    hi_in: float = 480.0,
    rel_tol: float = 1e-10,
) -> float:
    """Exact round diameter (in.) carrying ``airflow_cfm`` at ``friction_rate`` in. w.g./100 ft.

    The friction rate decreases monotonically with diameter at constant airflow, so the root is found
    by bisection (on log D) of the Darcy-Weisbach/Colebrook relation.
    """
    if airflow_cfm <= 0 or friction_rate <= 0:
        raise ValueError("airflow and friction rate must be positive")

    def excess(d: float) -> float:
        return friction_rate_in_wg_per_100ft(airflow_cfm, d, roughness_ft) - friction_rate

    if excess(lo_in) < 0:
        raise ValueError(
            f"{airflow_cfm:g} cfm needs less than {lo_in:g} in. at {friction_rate:g} in. w.g./100 ft; "
            "increase the airflow or lower the friction rate"
        )
    if excess(hi_in) > 0:
        raise ValueError(
            f"{airflow_cfm:g} cfm at {friction_rate:g} in. w.g./100 ft needs a duct larger than "
            f"{hi_in:g} in.; raise the friction rate or split the airflow"
        )
    lo, hi = math.log(lo_in), math.log(hi_in)
    while hi - lo > rel_tol:
        mid = 0.5 * (lo + hi)
        if excess(math.exp(mid)) > 0:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def next_standard_round_size(diameter_in: float) -> int:
    """Smallest standard round size (in.) >= ``diameter_in`` (1-in. steps to 20 in., 2-in. above)."""
    for size in STANDARD_ROUND_SIZES_IN:
        if size >= diameter_in - 1e-6:
            return size
    raise ValueError(
        f"required diameter {diameter_in:.1f} in. exceeds the largest standard round size "
        f"({STANDARD_ROUND_SIZES_IN[-1]} in.); raise the friction rate or split the airflow"
    )


def huebscher_equivalent_diameter(a_in: float, b_in: float) -> float:
    """Circular equivalent of a rectangular duct for equal flow and friction (Huebscher 1948).

    De = 1.30 (a b)^0.625 / (a + b)^0.25, sides and result in inches.
    """
    if a_in <= 0 or b_in <= 0:
        raise ValueError("rectangular duct sides must be positive")
    return 1.30 * (a_in * b_in) ** 0.625 / (a_in + b_in) ** 0.25


def hydraulic_diameter(a_in: float, b_in: float) -> float:
    """Hydraulic diameter 4A/P = 2ab/(a+b) of a rectangular duct (in.)."""
    if a_in <= 0 or b_in <= 0:
        raise ValueError("rectangular duct sides must be positive")
    return 2.0 * a_in * b_in / (a_in + b_in)


# --------------------------------------------------------------------------------------------------
# Heat
# --------------------------------------------------------------------------------------------------


def sensible_heat_btuh(airflow_cfm: float, delta_t_f: float) -> float:
    """Sensible heat of standard air, Btu/h: Q = 1.08 x cfm x dT(F)."""
    return SENSIBLE_FACTOR * airflow_cfm * delta_t_f


def airflow_for_sensible_load(load_btuh: float, delta_t_f: float) -> float:
    """Airflow (cfm) that carries ``load_btuh`` at a supply temperature difference ``delta_t_f``."""
    if delta_t_f <= 0:
        raise ValueError("the supply air temperature difference must be positive")
    return load_btuh / (SENSIBLE_FACTOR * delta_t_f)


def envelope_load_btuh(surfaces: list[tuple[float, float]], delta_t_f: float) -> float:
    """Conduction load sum(U . A) . dT, Btu/h, for (U in Btu/(h.ft2.F), A in ft2) pairs."""
    return sum(u * a for u, a in surfaces) * delta_t_f


# --------------------------------------------------------------------------------------------------
# Request models
# --------------------------------------------------------------------------------------------------

_MODEL_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True)

Airflow = Annotated[
    float, Field(gt=0.5, le=MAX_AIRFLOW_CFM, allow_inf_nan=False, description="Airflow, cfm (ft3/min)")
]
FrictionRate = Annotated[
    float,
    Field(gt=0.005, le=1.0, allow_inf_nan=False, description="Design friction rate, in. w.g. per 100 ft"),
]
KCoefficient = Annotated[float, Field(ge=0, le=50, allow_inf_nan=False)]


class RoundDuctRequest(BaseModel):
    """Size a round duct by the equal-friction method."""

    model_config = _MODEL_CONFIG

    calculation_type: Literal["round_duct"] = "round_duct"
    airflow_cfm: Airflow
    friction_rate_in_wg_per_100ft: FrictionRate = 0.08
    material: Material = "galvanized_steel"


class RectangularDuctRequest(BaseModel):
    """Size a rectangular duct: give exactly one of ``aspect_ratio`` (width/height) or ``height_in``."""

    model_config = _MODEL_CONFIG

    calculation_type: Literal["rectangular_duct"] = "rectangular_duct"
    airflow_cfm: Airflow
    friction_rate_in_wg_per_100ft: FrictionRate = 0.08
    aspect_ratio: float | None = Field(None, ge=1.0, le=MAX_ASPECT_RATIO, allow_inf_nan=False)
    height_in: float | None = Field(None, ge=MIN_DUCT_SIZE_IN, le=120, allow_inf_nan=False)
    material: Material = "galvanized_steel"

    @model_validator(mode="after")
    def _one_constraint(self) -> RectangularDuctRequest:
        if (self.aspect_ratio is None) == (self.height_in is None):
            raise ValueError("give exactly one of aspect_ratio or height_in")
        return self


class PressureDropRequest(BaseModel):
    """Straight-duct pressure drop: round (``diameter_in``) or rectangular (``width_in``, ``height_in``)."""

    model_config = _MODEL_CONFIG

    calculation_type: Literal["pressure_drop"] = "pressure_drop"
    airflow_cfm: Airflow
    length_ft: float = Field(gt=0, le=10_000, allow_inf_nan=False)
    diameter_in: float | None = Field(None, ge=2, le=120, allow_inf_nan=False)
    width_in: float | None = Field(None, ge=2, le=240, allow_inf_nan=False)
    height_in: float | None = Field(None, ge=2, le=240, allow_inf_nan=False)
    material: Material = "galvanized_steel"
    friction_method: FrictionMethod = "colebrook"
    fitting_k: list[KCoefficient] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _one_geometry(self) -> PressureDropRequest:
        round_given = self.diameter_in is not None
        rect_given = self.width_in is not None or self.height_in is not None
        if round_given == rect_given:
            raise ValueError("give either diameter_in (round) or width_in and height_in (rectangular)")
        if rect_given and (self.width_in is None or self.height_in is None):
            raise ValueError("a rectangular duct needs both width_in and height_in")
        return self


class EnvelopeSurface(BaseModel):
    """One envelope element: U value (Btu/(h.ft2.F)) and area (ft2)."""

    model_config = _MODEL_CONFIG

    kind: SurfaceKind = "wall"
    u_value: float = Field(gt=0, le=2.0, allow_inf_nan=False, description="Btu/(h.ft2.F)")
    area_ft2: float = Field(gt=0, le=1_000_000, allow_inf_nan=False)


class HeatLoadRequest(BaseModel):
    """Sensible heat: 1.08 x cfm x dT, its inverse (cfm for a load) and/or an envelope U.A.dT load."""

    model_config = _MODEL_CONFIG

    calculation_type: Literal["heat_load"] = "heat_load"
    supply_delta_t_f: float = Field(20.0, gt=0, le=100, allow_inf_nan=False)
    airflow_cfm: Airflow | None = None
    sensible_load_btuh: float | None = Field(None, gt=0, le=50_000_000, allow_inf_nan=False)
    surfaces: list[EnvelopeSurface] = Field(default_factory=list, max_length=200)
    indoor_temp_f: float = Field(75.0, ge=40, le=100, allow_inf_nan=False)
    outdoor_temp_f: float = Field(95.0, ge=-60, le=130, allow_inf_nan=False)

    @model_validator(mode="after")
    def _something_to_do(self) -> HeatLoadRequest:
        if self.airflow_cfm is not None and self.sensible_load_btuh is not None:
            raise ValueError("give airflow_cfm or sensible_load_btuh, not both")
        if self.airflow_cfm is None and self.sensible_load_btuh is None and not self.surfaces:
            raise ValueError("give airflow_cfm, sensible_load_btuh or at least one envelope surface")
        return self


RequestModel = RoundDuctRequest | RectangularDuctRequest | PressureDropRequest | HeatLoadRequest
CalculationRequest = Annotated[
    RoundDuctRequest | RectangularDuctRequest | PressureDropRequest | HeatLoadRequest,
    Field(discriminator="calculation_type"),
]
_REQUEST_ADAPTER: TypeAdapter[RequestModel] = TypeAdapter(CalculationRequest)


# --------------------------------------------------------------------------------------------------
# Calculations
# --------------------------------------------------------------------------------------------------


def _r(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


def _sig(value: float, sig: int = 6) -> float:
    """Round to ``sig`` significant digits (for small numbers such as friction factors)."""
    if value == 0:
        return 0.0
    return round(float(value), sig - 1 - math.floor(math.log10(abs(value))))


def _check_velocity(velocity_fpm: float) -> None:
    if velocity_fpm > MAX_VELOCITY_FPM:
        raise ValueError(
            f"air velocity {velocity_fpm:,.0f} fpm exceeds {MAX_VELOCITY_FPM:,.0f} fpm; "
            "the duct is far too small for this airflow"
        )


def _round_duct(req: RoundDuctRequest) -> Result:
    roughness = MATERIAL_ROUGHNESS_FT[req.material]
    exact = solve_round_diameter(req.airflow_cfm, req.friction_rate_in_wg_per_100ft, roughness)
    size = next_standard_round_size(exact)
    area = circle_area_ft2(size)
    velocity = req.airflow_cfm / area
    _check_velocity(velocity)
    re = reynolds_number(velocity, size)
    f = friction_factor(re, roughness / (size / 12.0))
    rate = 12.0 * f * 100.0 / size * velocity_pressure_in_wg(velocity)
    vp = velocity_pressure_in_wg(velocity)
    return {
        "calculation_type": "round_duct",
        "method": "equal_friction",
        "material": req.material,
        "roughness_ft": roughness,
        "airflow_cfm": _r(req.airflow_cfm, 3),
        "design_friction_rate_in_wg_per_100ft": _r(req.friction_rate_in_wg_per_100ft, 5),
        "diameter_exact_in": _r(exact, 3),
        "diameter_in": size,
        "area_ft2": _r(area, 5),
        "velocity_fpm": _r(velocity, 1),
        "velocity_pressure_in_wg": _r(vp, 5),
        "friction_rate_in_wg_per_100ft": _r(rate, 5),
        "reynolds_number": round(re),
        "friction_factor": _sig(f),
        "flow_regime": flow_regime(re),
        "diameter_mm": _r(size * MM_PER_IN, 1),
        "airflow_l_s": _r(req.airflow_cfm * L_S_PER_CFM, 2),
        "velocity_m_s": _r(velocity * M_S_PER_FPM, 3),
        "friction_rate_pa_per_m": _r(rate * PA_PER_IN_WG / (100.0 * M_PER_FT), 4),
    }


def _smallest_width(required_de: float, height: int) -> int:
    """Smallest whole-inch width giving a Huebscher diameter >= ``required_de`` at ``height``."""
    hi = MAX_ASPECT_RATIO * height
    if huebscher_equivalent_diameter(hi, height) < required_de - 1e-9:
        raise ValueError(
            f"a {height} in. high duct would need an aspect ratio above {MAX_ASPECT_RATIO:g}:1 "
            f"for an equivalent diameter of {required_de:.1f} in.; increase the height"
        )
    lo = 1e-3
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if huebscher_equivalent_diameter(mid, height) < required_de:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-9:
            break
    return max(MIN_DUCT_SIZE_IN, math.ceil(hi - 1e-6))


def _rectangular_duct(req: RectangularDuctRequest) -> Result:
    roughness = MATERIAL_ROUGHNESS_FT[req.material]
    required = solve_round_diameter(req.airflow_cfm, req.friction_rate_in_wg_per_100ft, roughness)
    if req.aspect_ratio is not None:
        r = req.aspect_ratio
        # De(rH, H) = 1.30 r^0.625 H / (r + 1)^0.25  ->  closed form for H.
        height_exact = required * (r + 1.0) ** 0.25 / (1.30 * r**0.625)
        height = max(MIN_DUCT_SIZE_IN, round(height_exact))
    else:
        assert req.height_in is not None  # guaranteed by the model validator
        height = max(MIN_DUCT_SIZE_IN, math.ceil(req.height_in - 1e-9))
    width = _smallest_width(required, height)
    aspect = max(width, height) / min(width, height)
    if aspect > MAX_ASPECT_RATIO + 1e-9:
        raise ValueError(
            f"{width} x {height} in. has an aspect ratio of {aspect:.1f}:1 (max {MAX_ASPECT_RATIO:g}:1); "
            "choose a smaller height for this airflow"
        )
    de = huebscher_equivalent_diameter(width, height)
    area = width * height / 144.0
    velocity = req.airflow_cfm / area
    _check_velocity(velocity)
    rate = friction_rate_in_wg_per_100ft(req.airflow_cfm, de, roughness)
    return {
        "calculation_type": "rectangular_duct",
        "method": "equal_friction_huebscher",
        "material": req.material,
        "airflow_cfm": _r(req.airflow_cfm, 3),
        "design_friction_rate_in_wg_per_100ft": _r(req.friction_rate_in_wg_per_100ft, 5),
        "required_diameter_in": _r(required, 3),
        "width_in": width,
        "height_in": height,
        "aspect_ratio": _r(width / height, 3),
        "equivalent_diameter_in": _r(de, 3),
        "hydraulic_diameter_in": _r(hydraulic_diameter(width, height), 3),
        "area_ft2": _r(area, 5),
        "velocity_fpm": _r(velocity, 1),
        "velocity_pressure_in_wg": _r(velocity_pressure_in_wg(velocity), 5),
        "friction_rate_in_wg_per_100ft": _r(rate, 5),
        "width_mm": _r(width * MM_PER_IN, 1),
        "height_mm": _r(height * MM_PER_IN, 1),
        "velocity_m_s": _r(velocity * M_S_PER_FPM, 3),
    }


def _pressure_drop(req: PressureDropRequest) -> Result:
    roughness = MATERIAL_ROUGHNESS_FT[req.material]
    if req.diameter_in is not None:
        shape = "round"
        dh = req.diameter_in
        area = circle_area_ft2(dh)
    else:
        assert req.width_in is not None and req.height_in is not None  # model validator
        shape = "rectangular"
        dh = hydraulic_diameter(req.width_in, req.height_in)
        area = req.width_in * req.height_in / 144.0
    velocity = req.airflow_cfm / area
    _check_velocity(velocity)
    vp = velocity_pressure_in_wg(velocity)
    re = reynolds_number(velocity, dh)
    rel = roughness / (dh / 12.0)
    f = friction_factor(re, rel, req.friction_method)
    friction_loss = 12.0 * f * req.length_ft / dh * vp
    sum_k = math.fsum(req.fitting_k)
    fitting_loss = sum_k * vp
    total = friction_loss + fitting_loss
    return {
        "calculation_type": "pressure_drop",
        "shape": shape,
        "material": req.material,
        "friction_method": req.friction_method,
        "airflow_cfm": _r(req.airflow_cfm, 3),
        "length_ft": _r(req.length_ft, 3),
        "hydraulic_diameter_in": _r(dh, 4),
        "area_ft2": _r(area, 5),
        "velocity_fpm": _r(velocity, 1),
        "velocity_pressure_in_wg": _r(vp, 5),
        "reynolds_number": round(re),
        "flow_regime": flow_regime(re),
        "roughness_ft": roughness,
        "relative_roughness": _sig(rel),
        "friction_factor": _sig(f),
        "friction_rate_in_wg_per_100ft": _r(friction_loss * 100.0 / req.length_ft, 5),
        "friction_loss_in_wg": _r(friction_loss, 5),
        "fittings_count": len(req.fitting_k),
        "fitting_k_total": _r(sum_k, 4),
        "fitting_loss_in_wg": _r(fitting_loss, 5),
        "pressure_drop_in_wg": _r(total, 5),
        "pressure_drop_pa": _r(total * PA_PER_IN_WG, 2),
        "velocity_m_s": _r(velocity * M_S_PER_FPM, 3),
    }


def _heat_load(req: HeatLoadRequest) -> Result:
    dt = req.supply_delta_t_f
    out: Result = {
        "calculation_type": "heat_load",
        "supply_delta_t_f": _r(dt, 3),
        "sensible_factor": SENSIBLE_FACTOR,
    }
    load: float | None = None
    if req.airflow_cfm is not None:
        q = sensible_heat_btuh(req.airflow_cfm, dt)
        out["airflow_cfm"] = _r(req.airflow_cfm, 3)
        out["sensible_heat_btuh"] = _r(q, 2)
        out["sensible_heat_w"] = _r(q * W_PER_BTUH, 2)
        out["sensible_heat_tons"] = _r(q / 12_000.0, 4)
    elif req.sensible_load_btuh is not None:
        load = req.sensible_load_btuh
        out["sensible_load_btuh"] = _r(load, 2)
    if req.surfaces:
        env_dt = abs(req.outdoor_temp_f - req.indoor_temp_f)
        ua = math.fsum(s.u_value * s.area_ft2 for s in req.surfaces)
        env = envelope_load_btuh([(s.u_value, s.area_ft2) for s in req.surfaces], env_dt)
        out["envelope_delta_t_f"] = _r(env_dt, 3)
        out["envelope_ua_btuh_per_f"] = _r(ua, 3)
        out["envelope_load_btuh"] = _r(env, 2)
        out["envelope_load_w"] = _r(env * W_PER_BTUH, 2)
        out["envelope_surfaces"] = len(req.surfaces)
        for kind in sorted({s.kind for s in req.surfaces}):
            part = math.fsum(s.u_value * s.area_ft2 for s in req.surfaces if s.kind == kind) * env_dt
            out[f"{kind}_load_btuh"] = _r(part, 2)
        if req.airflow_cfm is None and load is None:
            load = env
    if load is not None:
        cfm = airflow_for_sensible_load(load, dt)
        out["required_airflow_cfm"] = _r(cfm, 2)
        out["required_airflow_l_s"] = _r(cfm * L_S_PER_CFM, 2)
    return out


_DISPATCH: Final[dict[str, Callable[[Any], Result]]] = {
    "round_duct": _round_duct,
    "rectangular_duct": _rectangular_duct,
    "pressure_drop": _pressure_drop,
    "heat_load": _heat_load,
}


def compute(request: RequestModel | Mapping[str, Any]) -> Result:
    """Run the calculation for a validated request (a plain mapping is validated first).

    Returns a JSON-serialisable dict whose keys carry units.  Raises ``ValueError`` for physically
    impossible combinations (and pydantic's ``ValidationError``, itself a ``ValueError``, for bad input).
    """
    if isinstance(request, Mapping):
        request = _REQUEST_ADAPTER.validate_python(request)
    handler = _DISPATCH.get(getattr(request, "calculation_type", ""))
    if handler is None:
        raise ValueError(f"unsupported request type {type(request).__name__}")
    try:
        result = handler(request)
    except (ZeroDivisionError, OverflowError) as exc:  # defensive: never surface as a 500
        raise ValueError(f"calculation failed for these inputs: {exc}") from exc
    for key, value in result.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"calculation produced a non-finite {key}; check the inputs")
    return result


# --------------------------------------------------------------------------------------------------
# Load-generation samples
# --------------------------------------------------------------------------------------------------

#: A small set of common airflows so that repeated requests can hit a cache.
COMMON_AIRFLOWS_CFM: Final[tuple[int, ...]] = (
    50, 75, 100, 125, 150, 200, 250, 300, 400, 500,
    600, 800, 1000, 1200, 1500, 2000, 2500, 3000, 4000, 6000,
)  # fmt: skip
COMMON_FRICTION_RATES: Final[tuple[float, ...]] = (0.05, 0.06, 0.08, 0.08, 0.1, 0.1, 0.12, 0.15)
COMMON_ASPECT_RATIOS: Final[tuple[float, ...]] = (1.0, 1.5, 2.0, 2.0, 2.5, 3.0, 4.0)
COMMON_HEIGHTS_IN: Final[tuple[int, ...]] = (6, 8, 10, 12, 14, 16, 18, 20, 24)
COMMON_LENGTHS_FT: Final[tuple[int, ...]] = (10, 20, 25, 40, 50, 75, 100, 150, 200)
#: Typical fitting loss coefficients: 90-deg smooth elbow, 45-deg elbow, tee branch, damper, grille...
COMMON_FITTING_K: Final[tuple[float, ...]] = (0.11, 0.15, 0.22, 0.3, 0.5, 0.6, 1.0, 1.3)
COMMON_DELTA_T_F: Final[tuple[int, ...]] = (15, 18, 20, 20, 22, 25, 30)
_SURFACE_U: Final[dict[str, tuple[float, ...]]] = {
    "wall": (0.05, 0.064, 0.08, 0.1),
    "window": (0.3, 0.35, 0.5, 0.65),
    "roof": (0.03, 0.035, 0.05),
    "door": (0.2, 0.4),
    "floor": (0.05, 0.08),
    "skylight": (0.5, 0.7),
}


def _sample_round(rng: random.Random) -> dict[str, Any]:
    body: dict[str, Any] = {
        "calculation_type": "round_duct",
        "airflow_cfm": rng.choice(COMMON_AIRFLOWS_CFM),
        "friction_rate_in_wg_per_100ft": rng.choice(COMMON_FRICTION_RATES),
    }
    if rng.random() < 0.2:
        body["material"] = rng.choice(("galvanized_spiral", "aluminum", "flexible_duct", "fibrous_glass"))
    return body


def _sample_rectangular(rng: random.Random) -> dict[str, Any]:
    base: dict[str, Any] = {
        "calculation_type": "rectangular_duct",
        "airflow_cfm": rng.choice(COMMON_AIRFLOWS_CFM),
        "friction_rate_in_wg_per_100ft": rng.choice(COMMON_FRICTION_RATES),
    }
    if rng.random() < 0.5:
        for _ in range(10):  # a fixed height must suit the airflow (aspect ratio <= 8)
            body = {**base, "height_in": rng.choice(COMMON_HEIGHTS_IN)}
            try:
                compute(body)
            except ValueError:
                continue
            return body
    return {**base, "aspect_ratio": rng.choice(COMMON_ASPECT_RATIOS)}


def _sample_pressure_drop(rng: random.Random) -> dict[str, Any]:
    airflow = rng.choice(COMMON_AIRFLOWS_CFM)
    body: dict[str, Any] = {
        "calculation_type": "pressure_drop",
        "airflow_cfm": airflow,
        "length_ft": rng.choice(COMMON_LENGTHS_FT),
    }
    # Pick a duct giving a realistic 400-2500 fpm.
    target_fpm = rng.uniform(400.0, 2500.0)
    if rng.random() < 0.7:
        d = math.sqrt(4.0 * airflow / target_fpm / math.pi) * 12.0
        body["diameter_in"] = next_standard_round_size(min(d, 120.0))
    else:
        height = rng.choice((6, 8, 10, 12, 16, 20))
        width = max(height, math.ceil(airflow / target_fpm * 144.0 / height))
        body["width_in"] = min(width, 240)
        body["height_in"] = height
    if rng.random() < 0.3:
        body["material"] = rng.choice(tuple(MATERIAL_ROUGHNESS_FT))
    if rng.random() < 0.3:
        body["friction_method"] = "swamee_jain"
    body["fitting_k"] = [rng.choice(COMMON_FITTING_K) for _ in range(rng.randint(0, 4))]
    return body


def _sample_heat_load(rng: random.Random) -> dict[str, Any]:
    body: dict[str, Any] = {"calculation_type": "heat_load", "supply_delta_t_f": rng.choice(COMMON_DELTA_T_F)}
    mode = rng.random()
    if mode < 0.4:
        body["airflow_cfm"] = rng.choice(COMMON_AIRFLOWS_CFM)
    elif mode < 0.7:
        body["sensible_load_btuh"] = rng.choice((6_000, 12_000, 18_000, 24_000, 36_000, 48_000, 60_000))
    else:
        body["indoor_temp_f"] = rng.choice((70, 72, 75))
        body["outdoor_temp_f"] = rng.choice((-10, 0, 10, 20, 90, 95, 100, 105))
        kinds = ["wall", "window", "roof", *rng.sample(["door", "floor", "skylight"], rng.randint(0, 2))]
        body["surfaces"] = [
            {
                "kind": kind,
                "u_value": rng.choice(_SURFACE_U[kind]),
                "area_ft2": rng.choice((20, 40, 80, 120, 200, 400, 800, 1500)),
            }
            for kind in kinds
        ]
    return body


_SAMPLERS: Final[dict[str, Callable[[random.Random], dict[str, Any]]]] = {
    "round_duct": _sample_round,
    "rectangular_duct": _sample_rectangular,
    "pressure_drop": _sample_pressure_drop,
    "heat_load": _sample_heat_load,
}


def sample_request(rng: random.Random, calculation_type: str | None = None) -> dict[str, Any]:
    """A realistic, valid JSON request body (values drawn from small sets so caches can hit)."""
    kind = calculation_type if calculation_type is not None else rng.choice(CALCULATION_TYPES)
    sampler = _SAMPLERS.get(kind)
    if sampler is None:
        raise ValueError(f"unknown calculation_type {kind!r}; expected one of {CALCULATION_TYPES}")
    return sampler(rng)


def invalid_sample(rng: random.Random) -> dict[str, Any]:
    """A JSON request body that fails validation (for invalid-input traffic)."""
    base = sample_request(rng, "round_duct")
    variants: list[Callable[[], dict[str, Any]]] = [
        lambda: {**base, "airflow_cfm": -rng.choice(COMMON_AIRFLOWS_CFM)},
        lambda: {**base, "airflow_cfm": 0},
        lambda: {**base, "airflow_cfm": 1e12},
        lambda: {**base, "airflow_cfm": "NaN"},
        lambda: {**base, "friction_rate_in_wg_per_100ft": "inf"},
        lambda: {**base, "friction_rate_in_wg_per_100ft": 0},
        lambda: {**base, "airflow_cfm": "lots"},
        lambda: {**base, "unexpected_field": 1},
        lambda: {**base, "material": "unobtainium"},
        lambda: {**base, "calculation_type": "psychrometrics"},
        lambda: {k: v for k, v in base.items() if k != "calculation_type"},
        lambda: {"calculation_type": "round_duct"},
        lambda: {"calculation_type": "rectangular_duct", "airflow_cfm": 1000,
                 "aspect_ratio": 2, "height_in": 12},
        lambda: {"calculation_type": "rectangular_duct", "airflow_cfm": 1000, "aspect_ratio": 20},
        lambda: {"calculation_type": "pressure_drop", "airflow_cfm": 1000, "length_ft": -5,
                 "diameter_in": 12},
        lambda: {"calculation_type": "pressure_drop", "airflow_cfm": 1000, "length_ft": 50,
                 "diameter_in": 12, "fitting_k": [0.3, -1]},
        lambda: {"calculation_type": "pressure_drop", "airflow_cfm": 1000, "length_ft": 50},
        lambda: {"calculation_type": "heat_load", "supply_delta_t_f": 20},
        lambda: {"calculation_type": "heat_load", "airflow_cfm": 1000, "sensible_load_btuh": 20000},
        lambda: {"calculation_type": "heat_load", "airflow_cfm": 1000, "supply_delta_t_f": -20},
    ]  # fmt: skip
    return rng.choice(variants)()
