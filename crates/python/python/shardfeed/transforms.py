"""Training-time transforms run inside shardfeed's decode, with torchvision's names and
conventions::

    from shardfeed import Loader
    from shardfeed.transforms import (
        CenterCrop, Compose, Normalize, RandomHorizontalFlip, RandomResizedCrop)

    train = Loader("shards/", layout="NCHW", transform=Compose([
        RandomResizedCrop(224),
        RandomHorizontalFlip(),
        Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    ]))
    val = Loader("val/", layout="NCHW", transform=Compose([CenterCrop(224), Normalize(...)]))

The crop is decoded from only the JPEG's region it covers, at the smallest DCT scale that
keeps it at least the output size, then resized (antialiased bilinear, as torchvision's
``resized_crop(antialias=True)``); the flip and ``Normalize`` happen in the one copy into the
batch. Each record's crop and flip come from a generator keyed by ``(seed, epoch, record)``,
so they are the same for any ``jobs``, any ``world_size`` and after ``load_state_dict``.

Only these steps, in this order, run fused: a crop (``RandomResizedCrop`` or
``CenterCrop``), then optionally ``RandomHorizontalFlip``, then optionally ``Normalize``.
Anything else is refused when the ``Loader`` is made, never emulated slowly.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple, Union

__all__ = [
    "CenterCrop",
    "Compose",
    "Normalize",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
]

Size = Union[int, Tuple[int, int], Sequence[int]]


def _square(size: Size, name: str) -> int:
    if isinstance(size, bool):
        raise TypeError(f"{name}: size must be an int or an (h, w) pair, not a bool")
    if isinstance(size, int):
        value = size
    else:
        sides = list(size)
        if len(sides) == 1:
            sides = sides * 2
        if len(sides) != 2 or sides[0] != sides[1]:
            raise ValueError(
                f"{name}: only square outputs are fused (size=N or (N, N)), not {tuple(sides)}"
            )
        value = sides[0]
    if not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}: size must be a positive int, not {value!r}")
    return value


def _pair(values: Sequence[float], name: str, what: str) -> Tuple[float, float]:
    pair = tuple(float(v) for v in values)
    if len(pair) != 2:
        raise ValueError(f"{name}: {what} must be a (low, high) pair, not {values!r}")
    return pair  # type: ignore[return-value]


class _Step:
    """One fused step; ``Compose([...])`` orders them."""

    _order = 0

    def _shardfeed_spec(self) -> Dict[str, Any]:
        return Compose([self])._shardfeed_spec()


class RandomResizedCrop(_Step):
    """torchvision's ``RandomResizedCrop(size, scale, ratio)``: a crop of a random area
    fraction (uniform in ``scale``) and aspect ratio (log-uniform in ``ratio``), 10 tries then
    the centre fallback, resized to ``size`` × ``size``. ``dct_scaling=False`` decodes the
    crop's region at full size (slower; the reference path's pixels exactly)."""

    _order = 0

    def __init__(
        self,
        size: Size,
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        *,
        dct_scaling: bool = True,
    ) -> None:
        self.size = _square(size, "RandomResizedCrop")
        self.scale = _pair(scale, "RandomResizedCrop", "scale")
        self.ratio = _pair(ratio, "RandomResizedCrop", "ratio")
        if not (0 < self.scale[0] <= self.scale[1] <= 1):
            raise ValueError(f"RandomResizedCrop: scale must be 0 < low <= high <= 1, not {self.scale}")
        if not (0 < self.ratio[0] <= self.ratio[1] and math.isfinite(self.ratio[1])):
            raise ValueError(f"RandomResizedCrop: ratio must be 0 < low <= high, not {self.ratio}")
        self.dct_scaling = bool(dct_scaling)

    def __repr__(self) -> str:
        return f"RandomResizedCrop(size={self.size}, scale={self.scale}, ratio={self.ratio})"


class CenterCrop(_Step):
    """Evaluation's resize + centre crop: the shorter side resized to ``round(size / ratio)``
    (torchvision's ``Resize``), then the centre ``size`` × ``size`` (``CenterCrop``); ratio
    0.875 is the usual ``Resize(256)`` + ``CenterCrop(224)``."""

    _order = 0

    def __init__(self, size: Size, ratio: float = 0.875, *, dct_scaling: bool = True) -> None:
        self.size = _square(size, "CenterCrop")
        self.ratio = float(ratio)
        if not (0 < self.ratio <= 1):
            raise ValueError(f"CenterCrop: ratio must be in (0, 1], not {ratio}")
        self.dct_scaling = bool(dct_scaling)

    def __repr__(self) -> str:
        return f"CenterCrop(size={self.size}, ratio={self.ratio})"


class RandomHorizontalFlip(_Step):
    """Mirrors the crop left to right with probability ``p`` (done in the copy out)."""

    _order = 1

    def __init__(self, p: float = 0.5) -> None:
        self.p = float(p)
        if not (0 <= self.p <= 1):
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], not {p}")

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Normalize(_Step):
    """``(x - mean) / std`` per channel on values scaled to [0, 1], as torchvision's
    ``Normalize`` after ``ToDtype(float32, scale=True)``; fused with the ``uint8`` → float
    conversion (a lookup table). Needs a float ``dtype``."""

    _order = 2

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("Normalize: mean and std need one value per channel (3)")
        if any(not (s > 0 and math.isfinite(s)) for s in self.std):
            raise ValueError(f"Normalize: std must be positive, not {self.std}")

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class Compose:
    """The fused steps, in order: a crop, then optionally a flip, then optionally
    ``Normalize``."""

    def __init__(self, transforms: Sequence[Any]) -> None:
        self.transforms = list(transforms)
        self._shardfeed_spec()  # refuse what cannot be fused now, not at the first batch

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"

    def _shardfeed_spec(self) -> Dict[str, Any]:
        crop: Optional[_Step] = None
        flip = 0.0
        normalize: Optional[Normalize] = None
        last = -1
        for step in self.transforms:
            if not isinstance(step, _Step):
                raise TypeError(
                    f"{type(step).__module__}.{type(step).__qualname__} cannot run inside "
                    "shardfeed's decode: use shardfeed.transforms' RandomResizedCrop or "
                    "CenterCrop, RandomHorizontalFlip, Normalize (apply other transforms "
                    "to the batches yourself)"
                )
            if step._order <= last:
                raise ValueError(
                    "Compose: the fused order is one crop, then RandomHorizontalFlip, then "
                    f"Normalize; {step!r} is out of place in {self!r}"
                )
            last = step._order
            if isinstance(step, (RandomResizedCrop, CenterCrop)):
                crop = step
            elif isinstance(step, RandomHorizontalFlip):
                flip = step.p
            elif isinstance(step, Normalize):
                normalize = step
        if crop is None:
            raise ValueError(
                "Compose: a fused transform starts with RandomResizedCrop or CenterCrop "
                "(without one, use Loader(size=...) for the seed's square)"
            )
        spec: Dict[str, Any] = {
            "size": crop.size,
            "flip": flip,
            "dct_scaling": crop.dct_scaling,
            "mean": list(normalize.mean) if normalize else None,
            "std": list(normalize.std) if normalize else None,
        }
        if isinstance(crop, RandomResizedCrop):
            spec.update(crop="random", scale=crop.scale, ratio=crop.ratio)
        else:
            assert isinstance(crop, CenterCrop)
            spec.update(crop="center", ratio=crop.ratio)
        return spec
