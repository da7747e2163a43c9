"""Benchmark configurations: the one place that defines grids and suites.

A :class:`Config` is one convolution to time. Grids are cartesian products of option
values (:func:`build_grid`); the anchor suite is a fixed list of layer shapes. The CLI,
the pytest-benchmark suite and the regression gate all read their configurations here.
"""

from __future__ import annotations

import itertools
import json
import pathlib
from dataclasses import asdict, dataclass, fields

from convcore._geometry import conv_geometry

__all__ = [
    "Config",
    "GridError",
    "DEFAULT_GRID",
    "PYTEST_GRID",
    "ANCHOR_SHAPES",
    "GRID_KEYS",
    "anchor_suite",
    "build_grid",
    "parse_value",
    "load_grid_file",
]

DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Config:
    """One convolution: input ``(N, C, H, W)``, ``F`` filters of ``kernel x kernel``.

    ``padding`` is an int or ``'same'``/``'valid'``; ``groups`` an int (``groups == C ==
    F`` is depthwise); ``dtype`` ``'float32'`` or ``'float64'``; ``name`` a label for
    suites (grid configurations are labelled from their options).
    """

    N: int
    C: int
    H: int
    W: int
    F: int
    kernel: int
    stride: int = 1
    padding: int | str = 0
    dilation: int = 1
    groups: int = 1
    dtype: str = "float32"
    name: str = ""

    @property
    def x_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.C, self.H, self.W)

    @property
    def w_shape(self) -> tuple[int, int, int, int]:
        return (self.F, self.C // self.groups, self.kernel, self.kernel)

    @property
    def options(self) -> dict:
        """Keyword options for ``conv2d_forward``."""
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def geometry(self):
        """The validated :class:`convcore._geometry.Geometry`; raises ValueError if invalid."""
        return conv_geometry(self.x_shape, self.w_shape, **self.options)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        geo = self.geometry()
        return (self.N, self.F, geo.OH, geo.OW)

    @property
    def flops(self) -> int:
        """Floating-point operations of forward + dW + dX: three GEMMs of ``2*M*K*F``."""
        geo = self.geometry()
        return 3 * 2 * self.N * geo.P * (self.C // self.groups) * self.kernel**2 * self.F

    @property
    def label(self) -> str:
        """A short, unique description used in tables, file records and test ids."""
        dt = "f32" if self.dtype == "float32" else "f64"
        if self.name:
            return f"{self.name} {dt}"
        groups = ""
        if self.groups > 1:
            groups = " dw" if self.groups == self.C == self.F else f" g{self.groups}"
        pad = self.padding if isinstance(self.padding, str) else f"p{self.padding}"
        dil = f" d{self.dilation}" if self.dilation != 1 else ""
        return f"{dt} n{self.N} c{self.C}>{self.F} {self.H}x{self.W} k{self.kernel} s{self.stride} {pad}{dil}{groups}"

    def spec(self) -> dict:
        """The arrays and options to time, as plain data (what a gate worker receives)."""
        return dict(x_shape=self.x_shape, w_shape=self.w_shape, dtype=self.dtype, options=self.options)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


class GridError(ValueError):
    """A grid option with a bad value; ``option`` names it."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


# option -> (kind, minimum); kinds: "int", "padding", "groups", "dtype"
GRID_KEYS = {
    "stride": ("int", 1),
    "padding": ("padding", 0),
    "kernel": ("int", 1),
    "dilation": ("int", 1),
    "groups": ("groups", 1),
    "batch": ("int", 1),
    "channels": ("int", 1),
    "filters": ("int", 1),
    "size": ("int", 1),
    "dtype": ("dtype", 0),
}

# `convcore bench` with no arguments: a stride/padding sweep on a small-net shape
DEFAULT_GRID = dict(
    stride=[1, 2],
    padding=[0, 1, "same"],
    kernel=[3, 5],
    dilation=[1],
    groups=[1],
    batch=[16],
    channels=[16],
    filters=None,
    size=[32],
    dtype=["float32"],
)

# the pytest-benchmark sweep (benchmarks/): every stride, padding, kernel, dilation,
# grouping and dtype of the grid, on one small-net shape
PYTEST_GRID = dict(
    stride=[1, 2, 3],
    padding=[0, 1, "same"],
    kernel=[1, 3, 5, 7],
    dilation=[1, 2],
    groups=[1, "dw"],
    batch=[8],
    channels=[16],
    filters=None,
    size=[24],
    dtype=["float32", "float64"],
)

# the anchor suite: name, N, C, H, W, F, K, stride, pad
ANCHOR_SHAPES = [
    ("seed_3x3_k2", 1, 1, 3, 3, 1, 2, 1, 0),
    ("b1_c16_32x32_k3", 1, 16, 32, 32, 16, 3, 1, 1),
    ("lenet_c1_28_k5", 64, 1, 28, 28, 6, 5, 1, 0),
    ("cifar_c3_32_k3", 64, 3, 32, 32, 32, 3, 1, 1),
    ("cifar_c32_16_k3", 64, 32, 16, 16, 64, 3, 1, 1),
    ("down_c64_16_k3s2", 64, 64, 16, 16, 128, 3, 2, 1),
    ("resnet_c64_56_k3", 8, 64, 56, 56, 64, 3, 1, 1),
    ("pw_c128_14_k1", 32, 128, 14, 14, 256, 1, 1, 0),
    ("stem_c3_112_k7s2", 8, 3, 112, 112, 64, 7, 2, 3),
]


def anchor_suite(dtypes=("float32",)) -> list[Config]:
    """The anchor suite's configurations, one per shape and dtype."""
    return [
        Config(N, C, H, W, F, K, stride=s, padding=p, dtype=dt, name=name)
        for dt in dtypes
        for name, N, C, H, W, F, K, s, p in ANCHOR_SHAPES
    ]


def parse_value(option: str, value):
    """Validate one value of a grid option.

    Parameters
    ----------
    option : str
        A key of :data:`GRID_KEYS`.
    value : str or int
        Command-line text or a value from a grid file.

    Returns
    -------
    int or str
        The value normalised: an int, ``'same'``/``'valid'`` (padding), ``'dw'``
        (groups) or ``'float32'``/``'float64'`` (dtype).

    Raises
    ------
    GridError
        The option is unknown or the value invalid; ``option`` names the option.
    """
    if option not in GRID_KEYS:
        raise GridError(option, f"unknown grid option {option!r}; known: {', '.join(GRID_KEYS)}")
    kind, minimum = GRID_KEYS[option]
    text = str(value).strip().lower()
    if kind == "dtype":
        if text in ("f32", "f64"):
            text = {"f32": "float32", "f64": "float64"}[text]
        if text not in DTYPES:
            raise GridError(option, f"invalid dtype {value!r} (choose from float32, float64)")
        return text
    if kind == "padding" and text in ("same", "valid"):
        return text
    if kind == "groups" and text in ("dw", "depthwise"):
        return "dw"
    if isinstance(value, bool) or isinstance(value, float) or not text.lstrip("-").isdigit():
        extra = {"padding": ", 'same' or 'valid'", "groups": " or 'dw'"}.get(kind, "")
        raise GridError(option, f"invalid value {value!r} (expected an integer >= {minimum}{extra})")
    number = int(text)
    if number < minimum:
        raise GridError(option, f"invalid value {value!r} (must be >= {minimum})")
    return number


def _values(grid: dict, option: str) -> list:
    values = grid.get(option)
    if values is None:
        return []
    if not isinstance(values, (list, tuple)):
        values = [values]
    if not values:
        raise GridError(option, "needs at least one value")
    return list(dict.fromkeys(parse_value(option, v) for v in values))


def build_grid(grid: dict) -> tuple[list[Config], list[str]]:
    """Expand a grid into configurations.

    Parameters
    ----------
    grid : dict
        Option name (a key of :data:`GRID_KEYS`) to a value or a list of values. Options
        left out take :data:`DEFAULT_GRID`'s values; ``filters`` absent or None means as
        many filters as input channels.

    Returns
    -------
    configs : list of Config
        The cartesian product, in a stable order, without duplicates.
    notes : list of str
        One line per combination left out because it cannot run (groups not dividing
        the channels, a kernel larger than the padded input).

    Raises
    ------
    GridError
        An unknown option or a bad value; its ``option`` attribute names the option.
    """
    unknown = set(grid) - set(GRID_KEYS)
    if unknown:
        name = sorted(unknown)[0]
        raise GridError(name, f"unknown grid option {name!r}; known: {', '.join(GRID_KEYS)}")
    full = {**DEFAULT_GRID, **grid}
    axes = {k: _values(full, k) for k in GRID_KEYS}
    configs, notes = [], []
    order = ("dtype", "batch", "channels", "size", "groups", "kernel", "dilation", "stride", "padding")
    for combo in itertools.product(*(axes[k] for k in order)):
        o = dict(zip(order, combo))
        for F in axes["filters"] or [o["channels"]]:
            C = o["channels"]
            groups = C if o["groups"] == "dw" else o["groups"]
            if o["groups"] == "dw" and F != C:
                F = C
            cfg = Config(
                o["batch"], C, o["size"], o["size"], F, o["kernel"], o["stride"], o["padding"],
                o["dilation"], groups, o["dtype"],
            )  # fmt: skip
            if cfg in configs:
                continue
            try:
                if C % groups or F % groups:
                    raise ValueError(f"groups={groups} does not divide channels={C} and filters={F}")
                cfg.geometry()
            except ValueError as exc:
                notes.append(f"skipped {cfg.label}: {exc}")
                continue
            configs.append(cfg)
    return configs, notes


def load_grid_file(path) -> dict:
    """Read a grid (option -> value or list of values) from a ``.json`` or ``.toml`` file.

    TOML needs Python >= 3.11 (``tomllib``); on older Pythons use JSON.
    """
    path = pathlib.Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise GridError("grid", f"cannot read {path}: {exc.strerror}") from None
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ImportError:
            raise GridError("grid", f"{path}: TOML grids need Python >= 3.11; use a .json file") from None
        try:
            data = tomllib.loads(text.decode())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise GridError("grid", f"{path}: invalid TOML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise GridError("grid", f"{path}: invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise GridError("grid", f"{path}: expected a table of option = [values]")
    return data
