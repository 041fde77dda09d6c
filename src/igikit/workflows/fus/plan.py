"""A focused-ultrasound sonication plan: target, organs at risk, power limit, goal, read from YAML.

A plan is data (``CONVENTIONS.md``): :func:`load_plan` reads and validates it into a frozen
:class:`SonicationPlan`, and any problem is one :class:`~igikit.errors.InputError` naming the file
and the key (``plan.yaml: organs_at_risk[0].limit_c: 36.0 °C is below the body temperature ...``).

Layout (coordinates in mm on the simulated 2D grid, ITK order ``(x, y)``, measured from the centre
of voxel 0)::

    name: ablation demo
    profile: adult                 # patient profile: tissue properties, body temperature, limits
    tissue: muscle                 # tissue of the simulated field of view
    frame_interval_s: 2.0
    max_duration_s: 300            # heating and cooling, after the test sonication
    max_power_w: 2.0
    target:                        # an ellipse ...
      center_mm: [16.0, 16.0]
      radii_mm: [3.0, 3.0]
      # mask: target.npy           # ... or a mask file (1 inside), relative to the plan
    focus:
      sigma_mm: [1.5, 1.5, 4.0]    # Gaussian focal spot; center_mm defaults to the target centre
      trajectory_radius_mm: 0      # > 0: the focus is steered around a circle (volumetric heating)
    organs_at_risk:
      - name: skin
        limit_c: 43.0              # default: the profile's limits.temperature_c.<name> (or default_organ_at_risk)
        center_mm: [16.0, 27.0]
        radii_mm: [8.0, 1.5]
    goal:                          # ablation: hold the focus at a temperature until the target is lethal
      type: ablation
      focus_temperature_c: 57.0
      lesion_coverage: 0.95        # stop heating when this fraction of the target has CEM43 >= 240 min
    # goal: {type: hyperthermia, window_c: [41, 43], duration_min: 10}
    safety: {max_temperature_c: 90, min_trusted_fraction: 0.8, max_frame_delay_s: 1.0}
    test_sonication: {power_w: 0.3, duration_s: 16, cooling_s: 10}
    imaging: {grid_size: 64, spacing_mm: 0.5, te_s: 0.02, b0_t: 1.5, noise_c: 0.5, background: real}
    controller: {pid: {kp: 0.1, ki: 0.02, kd: 0.0}, mpc: {horizon: 10}}   # optional
    seed: 0
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from igikit.errors import InputError
from igikit.workflows.fus.control import SafetyLimits

GoalType = Literal["ablation", "hyperthermia"]

_TOP_KEYS = (
    "name",
    "profile",
    "tissue",
    "frame_interval_s",
    "max_duration_s",
    "max_power_w",
    "target",
    "focus",
    "organs_at_risk",
    "goal",
    "safety",
    "test_sonication",
    "imaging",
    "controller",
    "seed",
)


@dataclass(frozen=True)
class Region:
    """A region of the grid: an ellipse (``center_mm``, ``radii_mm``, ITK order x, y) or a mask file."""

    center_mm: tuple[float, float] | None = None
    radii_mm: tuple[float, float] | None = None
    mask_path: Path | None = None

    def mask(self, shape: tuple[int, int], spacing_mm: tuple[float, float]) -> np.ndarray:
        """The region as a boolean mask of the grid ``(H, W)``."""
        if self.mask_path is not None:
            from igikit.workflows.fus.series import read_mask

            return read_mask(self.mask_path, shape)
        assert self.center_mm is not None and self.radii_mm is not None  # validated by load_plan
        return ellipse_mask(shape, spacing_mm, self.center_mm, self.radii_mm)

    @property
    def description(self) -> str:
        """A few words for reports."""
        if self.mask_path is not None:
            return f"mask {self.mask_path.name}"
        assert self.center_mm is not None and self.radii_mm is not None
        c, r = self.center_mm, self.radii_mm
        return f"ellipse at ({c[0]:g}, {c[1]:g}) mm, radii {r[0]:g} x {r[1]:g} mm"


def ellipse_mask(
    shape: tuple[int, int], spacing_mm: Sequence[float], center_mm: Sequence[float], radii_mm: Sequence[float]
) -> np.ndarray:
    """Voxels of a ``(H, W)`` grid whose centres lie inside an axis-aligned ellipse (ITK-order mm)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    x = xx * spacing_mm[0] - center_mm[0]
    y = yy * spacing_mm[1] - center_mm[1]
    return np.asarray((x / radii_mm[0]) ** 2 + (y / radii_mm[1]) ** 2 <= 1.0)


@dataclass(frozen=True)
class OrganAtRisk:
    """An organ at risk: its name, temperature limit (°C) and region."""

    name: str
    limit_c: float
    region: Region


@dataclass(frozen=True)
class Goal:
    """What the sonication is for.

    ``ablation``: hold the focus at ``focus_temperature_c`` until ``lesion_coverage`` of the target
    has reached ``cem43_threshold_min``. ``hyperthermia``: hold the target's mean temperature in
    ``window_c`` for ``duration_min``.
    """

    type: GoalType
    focus_temperature_c: float = 57.0
    lesion_coverage: float = 0.95
    cem43_threshold_min: float = 240.0
    window_c: tuple[float, float] = (41.0, 43.0)
    duration_min: float = 10.0

    @property
    def setpoint_c(self) -> float:
        """The temperature the controller tracks: the focus (ablation) or the window's centre."""
        if self.type == "ablation":
            return self.focus_temperature_c
        return 0.5 * (self.window_c[0] + self.window_c[1])


@dataclass(frozen=True)
class TestSonication:
    """The short low-power heating the thermal model is identified from."""

    power_w: float = 0.3
    duration_s: float = 16.0
    cooling_s: float = 10.0


@dataclass(frozen=True)
class Imaging:
    """The simulated MR thermometry: grid, sequence, noise, background."""

    grid_size: int = 64
    spacing_mm: float = 0.5
    te_s: float = 0.02
    b0_t: float = 1.5
    noise_c: float = 0.5
    background: Literal["real", "synthetic"] = "real"
    baseline_frames: int = 4
    drift_rad_per_s: float = 0.0
    max_uncertainty_c: float = 2.0


@dataclass(frozen=True)
class SonicationPlan:
    """A validated sonication plan (see the module text for the YAML layout)."""

    name: str
    source: Path | None
    profile: str
    tissue: str
    body_temperature_c: float
    frame_interval_s: float
    max_duration_s: float
    max_power_w: float
    target: Region
    focus_center_mm: tuple[float, float]
    focus_sigma_mm: tuple[float, float, float]
    trajectory_radius_mm: float
    organs_at_risk: tuple[OrganAtRisk, ...]
    goal: Goal
    safety: SafetyLimits
    test_sonication: TestSonication
    imaging: Imaging
    pid_gains: Mapping[str, float] | None = None
    mpc_options: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0

    @property
    def shape(self) -> tuple[int, int]:
        """Grid shape ``(H, W)``."""
        return (self.imaging.grid_size, self.imaging.grid_size)

    @property
    def spacing_mm(self) -> tuple[float, float]:
        """Grid spacing ``(x, y)`` (mm)."""
        return (self.imaging.spacing_mm, self.imaging.spacing_mm)


# ------------------------------------------------------------------------------------ loading
class _Reader:
    """Typed access to the YAML tree; every failure names the plan file and the key."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def fail(self, key: str, problem: str) -> InputError:
        return InputError(f"{key}: {problem}", self.path)

    def mapping(self, node: Any, key: str) -> Mapping[str, Any]:
        if not isinstance(node, Mapping):
            raise self.fail(key, f"must be a mapping of keys to values, got {_describe(node)}")
        return node

    def only(self, node: Mapping[str, Any], allowed: Sequence[str], key: str) -> None:
        unknown = sorted(str(k) for k in node if k not in allowed)
        if unknown:
            where = f"{key}: " if key else ""
            raise InputError(f"{where}unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}", self.path)

    def number(
        self,
        node: Mapping[str, Any],
        name: str,
        key: str,
        *,
        default: float | None = None,
        positive: bool = False,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float:
        full = f"{key}.{name}" if key else name
        if name not in node or node[name] is None:
            if default is None:
                raise self.fail(full, "missing (a number is required)")
            return default
        value = node[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(full, f"must be a finite number, got {_describe(value)}")
        if positive and value <= 0:
            raise self.fail(full, f"must be > 0, got {value}")
        if minimum is not None and value < minimum:
            raise self.fail(full, f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.fail(full, f"must be <= {maximum}, got {value}")
        return float(value)

    def pair(self, node: Mapping[str, Any], name: str, key: str, n: int = 2, *, positive: bool = False) -> tuple:
        full = f"{key}.{name}" if key else name
        value = node.get(name)
        if value is None:
            raise self.fail(full, f"missing ({n} numbers are required)")
        if (
            not isinstance(value, list | tuple)
            or len(value) != n
            or any(isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) for v in value)
        ):
            raise self.fail(full, f"must be {n} finite numbers, got {_describe(value)}")
        if positive and min(value) <= 0:
            raise self.fail(full, f"must be > 0, got {list(value)}")
        return tuple(float(v) for v in value)

    def text(self, node: Mapping[str, Any], name: str, key: str, *, default: str | None = None) -> str:
        full = f"{key}.{name}" if key else name
        value = node.get(name, default)
        if value is None:
            raise self.fail(full, "missing (text is required)")
        if not isinstance(value, str) or not value.strip():
            raise self.fail(full, f"must be non-empty text, got {_describe(value)}")
        return value

    def region(self, node: Any, key: str, extra: Sequence[str] = ()) -> Region:
        node = self.mapping(node, key)
        self.only(node, ("center_mm", "radii_mm", "mask", *extra), key)
        if "mask" in node:
            if "center_mm" in node or "radii_mm" in node:
                raise self.fail(key, "give either mask or center_mm + radii_mm, not both")
            name = self.text(node, "mask", key)
            base = self.path.parent if self.path is not None else Path(".")
            mask_path = (base / name) if not Path(name).is_absolute() else Path(name)
            if not mask_path.is_file():
                raise self.fail(f"{key}.mask", f"mask file {mask_path} not found")
            return Region(mask_path=mask_path)
        if "center_mm" not in node:
            raise self.fail(key, "needs center_mm and radii_mm (mm), or a mask file")
        return Region(
            center_mm=self.pair(node, "center_mm", key), radii_mm=self.pair(node, "radii_mm", key, positive=True)
        )


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def load_plan(path: str | Path) -> SonicationPlan:
    """Read and validate a sonication plan (YAML).

    Raises
    ------
    InputError
        For a missing or unparsable file, a missing or unknown key, a value of the wrong type or out
        of range (an organ-at-risk limit at or below body temperature, a maximum power <= 0, a
        hyperthermia window outside the safety limits...); the message names the file and the key.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "plan.yaml"
    >>> _ = p.write_text("max_power_w: 0\\ntarget: {center_mm: [16, 16], radii_mm: [3, 3]}\\n"
    ...                  "goal: {type: ablation}\\n")
    >>> try:
    ...     load_plan(p)
    ... except Exception as exc:
    ...     print(str(exc).split(": ", 1)[1])
    max_power_w: must be > 0, got 0
    """
    from igikit.core.config import read_yaml

    p = Path(path)
    data = read_yaml(p, "plan")
    return plan_from_dict(data, source=p)


def plan_from_dict(data: Any, *, source: Path | None = None) -> SonicationPlan:
    """Validate a plan given as a mapping (what :func:`load_plan` reads from YAML)."""
    from igikit.core.profile import load_profile

    r = _Reader(source)
    if data is None:
        raise InputError("the plan is empty", source)
    top = r.mapping(data, "plan")
    r.only(top, _TOP_KEYS, "")
    for required in ("target", "goal", "max_power_w"):
        if required not in top:
            raise r.fail(required, "missing (a plan needs target, goal and max_power_w)")

    profile_name = r.text(top, "profile", "", default="adult")
    try:
        profile = load_profile(profile_name)
        tissue = r.text(top, "tissue", "", default="muscle")
        if tissue not in profile.tissues:
            raise r.fail(
                "tissue", f"profile {profile.name!r} has no tissue {tissue!r}; tissues: {', '.join(profile.tissues)}"
            )
        limits = profile.section("limits").get("temperature_c", {})
    except InputError as exc:
        if exc.path == source:
            raise
        raise r.fail("profile", exc.problem) from None
    body = profile.body_temperature_c

    frame_dt = r.number(top, "frame_interval_s", "", default=2.0, positive=True)
    max_power = r.number(top, "max_power_w", "", positive=True)
    max_duration = r.number(top, "max_duration_s", "", default=600.0, positive=True)

    # ---- imaging first: masks are checked against the grid
    im_node = r.mapping(top.get("imaging", {}), "imaging")
    im_keys = (
        "grid_size",
        "spacing_mm",
        "te_s",
        "b0_t",
        "noise_c",
        "background",
        "baseline_frames",
        "drift_rad_per_s",
        "max_uncertainty_c",
    )
    r.only(im_node, im_keys, "imaging")
    grid = r.number(im_node, "grid_size", "imaging", default=64, minimum=16, maximum=256)
    if grid != int(grid):
        raise r.fail("imaging.grid_size", f"must be a whole number of voxels, got {grid}")
    background = r.text(im_node, "background", "imaging", default="real")
    if background not in ("real", "synthetic"):
        raise r.fail("imaging.background", f"must be 'real' or 'synthetic', got {background!r}")
    baseline_frames = r.number(im_node, "baseline_frames", "imaging", default=4, minimum=1, maximum=64)
    imaging = Imaging(
        grid_size=int(grid),
        spacing_mm=r.number(im_node, "spacing_mm", "imaging", default=0.5, positive=True),
        te_s=r.number(im_node, "te_s", "imaging", default=0.02, positive=True),
        b0_t=r.number(im_node, "b0_t", "imaging", default=1.5, positive=True),
        noise_c=r.number(im_node, "noise_c", "imaging", default=0.5, minimum=0.0),
        background=background,  # type: ignore[arg-type]
        baseline_frames=int(baseline_frames),
        drift_rad_per_s=r.number(im_node, "drift_rad_per_s", "imaging", default=0.0),
        max_uncertainty_c=r.number(im_node, "max_uncertainty_c", "imaging", default=2.0, positive=True),
    )
    shape = (imaging.grid_size, imaging.grid_size)
    spacing = (imaging.spacing_mm, imaging.spacing_mm)
    extent = (imaging.grid_size - 1) * imaging.spacing_mm

    def inside(region: Region, key: str) -> np.ndarray:
        if region.center_mm is not None and not all(0 <= c <= extent for c in region.center_mm):
            raise r.fail(f"{key}.center_mm", f"{list(region.center_mm)} lies outside the grid (0-{extent:g} mm)")
        mask = region.mask(shape, spacing)
        if not mask.any():
            raise r.fail(key, f"the region holds no voxel of the {shape[0]} x {shape[1]} grid at {spacing[0]:g} mm")
        return mask

    target = r.region(top["target"], "target")
    target_mask = inside(target, "target")

    focus_node = r.mapping(top.get("focus", {}), "focus")
    r.only(focus_node, ("center_mm", "sigma_mm", "trajectory_radius_mm"), "focus")
    trajectory = r.number(focus_node, "trajectory_radius_mm", "focus", default=0.0, minimum=0.0)
    if "center_mm" in focus_node:
        focus_center = r.pair(focus_node, "center_mm", "focus")
    elif target.center_mm is not None:
        focus_center = target.center_mm
    else:
        yy, xx = np.nonzero(target_mask)
        focus_center = (float(xx.mean() * spacing[0]), float(yy.mean() * spacing[1]))
    sigma = r.pair(focus_node, "sigma_mm", "focus", 3, positive=True) if "sigma_mm" in focus_node else (1.5, 1.5, 4.0)

    organs: list[OrganAtRisk] = []
    oar_node = top.get("organs_at_risk", []) or []
    if not isinstance(oar_node, list):
        raise r.fail("organs_at_risk", f"must be a list of organs, got {_describe(oar_node)}")
    default_limit = float(limits.get("default_organ_at_risk", 44.0))
    for i, item in enumerate(oar_node):
        key = f"organs_at_risk[{i}]"
        item = r.mapping(item, key)
        name = r.text(item, "name", key)
        limit = r.number(item, "limit_c", key, default=float(limits.get(name, default_limit)))
        if limit <= body:
            raise r.fail(
                f"{key}.limit_c",
                f"{limit:g} °C is not above the body temperature {body:g} °C of profile {profile.name!r}",
            )
        region = r.region(item, key, extra=("name", "limit_c"))
        inside(region, key)
        organs.append(OrganAtRisk(name=name, limit_c=limit, region=region))
    if len({o.name for o in organs}) != len(organs):
        raise r.fail("organs_at_risk", "organ names must be unique")

    goal_node = r.mapping(top["goal"], "goal")
    goal_type = r.text(goal_node, "type", "goal")
    max_temp_default = float(limits.get("target_max", 90.0))
    safety_node = r.mapping(top.get("safety", {}), "safety")
    r.only(safety_node, ("max_temperature_c", "min_trusted_fraction", "max_frame_delay_s"), "safety")
    safety = SafetyLimits(
        max_temperature_c=r.number(safety_node, "max_temperature_c", "safety", default=max_temp_default),
        min_trusted_fraction=r.number(
            safety_node, "min_trusted_fraction", "safety", default=0.8, minimum=0.0, maximum=1.0
        ),
        max_frame_delay_s=r.number(safety_node, "max_frame_delay_s", "safety", default=frame_dt / 2, positive=True),
    )
    if safety.max_temperature_c <= body:
        raise r.fail(
            "safety.max_temperature_c", f"{safety.max_temperature_c:g} °C is not above body temperature {body:g} °C"
        )
    if goal_type == "ablation":
        r.only(goal_node, ("type", "focus_temperature_c", "lesion_coverage", "cem43_threshold_min"), "goal")
        focus_t = r.number(goal_node, "focus_temperature_c", "goal", default=57.0)
        if not body + 1.0 < focus_t < safety.max_temperature_c:
            raise r.fail(
                "goal.focus_temperature_c",
                f"{focus_t:g} °C must lie between body temperature {body:g} °C and the maximum "
                f"{safety.max_temperature_c:g} °C",
            )
        goal = Goal(
            type="ablation",
            focus_temperature_c=focus_t,
            lesion_coverage=r.number(goal_node, "lesion_coverage", "goal", default=0.95, positive=True, maximum=1.0),
            cem43_threshold_min=r.number(goal_node, "cem43_threshold_min", "goal", default=240.0, positive=True),
        )
    elif goal_type == "hyperthermia":
        r.only(goal_node, ("type", "window_c", "duration_min"), "goal")
        low, high = r.pair(goal_node, "window_c", "goal")
        if not body < low < high:
            raise r.fail(
                "goal.window_c", f"[{low:g}, {high:g}] °C must be increasing and above body temperature {body:g} °C"
            )
        if high >= safety.max_temperature_c:
            raise r.fail(
                "goal.window_c", f"upper bound {high:g} °C reaches the maximum {safety.max_temperature_c:g} °C"
            )
        goal = Goal(
            type="hyperthermia",
            window_c=(low, high),
            duration_min=r.number(goal_node, "duration_min", "goal", default=10.0, positive=True),
        )
    else:
        raise r.fail("goal.type", f"must be 'ablation' or 'hyperthermia', got {goal_type!r}")
    for organ in organs:
        if organ.limit_c <= goal.setpoint_c and organ.region.mask(shape, spacing)[target_mask].any():
            raise r.fail(
                "organs_at_risk",
                f"{organ.name!r} overlaps the target and its limit {organ.limit_c:g} °C is below the goal "
                f"{goal.setpoint_c:g} °C",
            )

    test_node = r.mapping(top.get("test_sonication", {}), "test_sonication")
    r.only(test_node, ("power_w", "duration_s", "cooling_s"), "test_sonication")
    test = TestSonication(
        power_w=r.number(
            test_node, "power_w", "test_sonication", default=min(0.15 * max_power, max_power), positive=True
        ),
        duration_s=r.number(test_node, "duration_s", "test_sonication", default=8 * frame_dt, positive=True),
        cooling_s=r.number(test_node, "cooling_s", "test_sonication", default=5 * frame_dt, minimum=0.0),
    )
    if test.power_w > max_power:
        raise r.fail("test_sonication.power_w", f"{test.power_w:g} W exceeds max_power_w {max_power:g} W")
    if test.duration_s < 3 * frame_dt:
        raise r.fail("test_sonication.duration_s", f"needs at least 3 frames ({3 * frame_dt:g} s) to identify a model")

    ctrl_node = r.mapping(top.get("controller", {}) or {}, "controller")
    r.only(ctrl_node, ("pid", "mpc"), "controller")
    pid_gains: dict[str, float] | None = None
    if "pid" in ctrl_node:
        pid_node = r.mapping(ctrl_node["pid"], "controller.pid")
        r.only(pid_node, ("kp", "ki", "kd"), "controller.pid")
        pid_gains = {k: r.number(pid_node, k, "controller.pid", default=0.0, minimum=0.0) for k in ("kp", "ki", "kd")}
    mpc_options: dict[str, float] = {}
    if "mpc" in ctrl_node:
        mpc_node = r.mapping(ctrl_node["mpc"], "controller.mpc")
        r.only(mpc_node, ("horizon", "move_penalty", "reference_time_s"), "controller.mpc")
        for k in ("horizon", "move_penalty", "reference_time_s"):
            if k in mpc_node:
                mpc_options[k] = r.number(mpc_node, k, "controller.mpc", minimum=0.0)
        if "horizon" in mpc_options and (
            mpc_options["horizon"] < 1 or mpc_options["horizon"] != int(mpc_options["horizon"])
        ):
            raise r.fail(
                "controller.mpc.horizon", f"must be a whole number of frames >= 1, got {mpc_options['horizon']}"
            )

    seed = r.number(top, "seed", "", default=0, minimum=0)
    return SonicationPlan(
        name=r.text(top, "name", "", default=source.stem if source is not None else "plan"),
        source=source,
        profile=profile_name,
        tissue=tissue,
        body_temperature_c=body,
        frame_interval_s=frame_dt,
        max_duration_s=max_duration,
        max_power_w=max_power,
        target=target,
        focus_center_mm=(float(focus_center[0]), float(focus_center[1])),
        focus_sigma_mm=(float(sigma[0]), float(sigma[1]), float(sigma[2])),
        trajectory_radius_mm=trajectory,
        organs_at_risk=tuple(organs),
        goal=goal,
        safety=safety,
        test_sonication=test,
        imaging=imaging,
        pid_gains=pid_gains,
        mpc_options=mpc_options,
        seed=int(seed),
    )
