//! `shardfeed.transforms` from Python into the read pipeline's [`Transform`], a batch's
//! record ids back out, and the crop rule exposed for comparison with torchvision's.

use numpy::IntoPyArray;
use numpy::ndarray::Array;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use shardfeed_dataset::loader::Traced;
use shardfeed_dataset::transform::Transform;
use shardfeed_image_prep::augment::{Augment, CropKind, RandomResizedCrop};
use shardfeed_image_prep::output::Normalize;
use shardfeed_input_pipeline::Rng;

/// A batch's record ids and transforms as numpy arrays: `file`, `record` (int64), `crop`
/// (float64 `(n, 4)`: left, top, width, height in the record's pixels; NaN without a
/// transform) and `flip` (bool).
pub(crate) fn traced_ids<'py>(py: Python<'py>, traced: &[Traced]) -> PyResult<Bound<'py, PyAny>> {
    let out = PyDict::new(py);
    let files: Vec<i64> = traced.iter().map(|t| i64::from(t.file)).collect();
    let records: Vec<i64> = traced.iter().map(|t| t.record as i64).collect();
    let mut crops = Vec::with_capacity(traced.len() * 4);
    let mut flips = Vec::with_capacity(traced.len());
    for t in traced {
        match t.applied {
            Some(a) => {
                crops.extend([a.crop.left, a.crop.top, a.crop.width, a.crop.height]);
                flips.push(a.flip);
            }
            None => {
                crops.extend([f64::NAN; 4]);
                flips.push(false);
            }
        }
    }
    out.set_item("file", files.into_pyarray(py))?;
    out.set_item("record", records.into_pyarray(py))?;
    let crops = Array::from_shape_vec((traced.len(), 4), crops)
        .map_err(|e| PyRuntimeError::new_err(format!("crop shape: {e}")))?;
    out.set_item("crop", crops.into_pyarray(py))?;
    out.set_item("flip", flips.into_pyarray(py))?;
    Ok(out.into_any())
}

/// A transform from Python: any object with `_shardfeed_spec()` (`shardfeed.transforms`'
/// classes and `Compose`), whose dict names the fused steps. Anything else is refused here,
/// when the `Loader` is made: the fused path runs nothing it cannot run fast.
pub(crate) fn parse_transform(transform: &Bound<'_, PyAny>) -> PyResult<Transform> {
    if !transform.hasattr("_shardfeed_spec")? {
        let name = transform.get_type().name()?.to_string();
        return Err(PyTypeError::new_err(format!(
            "transform must be shardfeed.transforms.Compose([...]) of RandomResizedCrop or CenterCrop, \
             then RandomHorizontalFlip and Normalize (run inside the decode); {name} is not one of them"
        )));
    }
    let spec = transform.call_method0("_shardfeed_spec")?;
    let spec = spec.cast::<PyDict>()?;
    let get = |key: &str| -> PyResult<Bound<'_, PyAny>> {
        spec.get_item(key)?
            .ok_or_else(|| PyValueError::new_err(format!("transform spec lacks {key:?}")))
    };
    let size: u32 = get("size")?.extract()?;
    let crop = match get("crop")?.extract::<String>()?.as_str() {
        "random" => CropKind::Random(RandomResizedCrop {
            scale: get("scale")?.extract()?,
            ratio: get("ratio")?.extract()?,
        }),
        "center" => CropKind::Centre {
            ratio: get("ratio")?.extract()?,
        },
        other => {
            return Err(PyValueError::new_err(format!(
                "transform spec: unknown crop {other:?}"
            )));
        }
    };
    let normalize = match (
        get("mean")?.extract::<Option<[f32; 3]>>()?,
        get("std")?.extract::<Option<[f32; 3]>>()?,
    ) {
        (Some(mean), Some(std)) => Some(Normalize { mean, std }),
        _ => None,
    };
    Ok(Transform {
        augment: Augment {
            crop,
            size,
            flip: get("flip")?.extract()?,
            dct_scaling: get("dct_scaling")?.extract()?,
        },
        normalize,
    })
}

/// `n` crops of torchvision's rule (`RandomResizedCrop()`'s defaults) for a `width` ×
/// `height` image, as `(n, 4)` float64 (left, top, width, height), from `seed`: for the test
/// that compares the rule with torchvision's own `get_params`.
#[pyfunction]
pub(crate) fn _sample_crops(
    py: Python<'_>,
    width: u32,
    height: u32,
    n: usize,
    seed: u64,
) -> PyResult<Bound<'_, PyAny>> {
    let rrc = RandomResizedCrop::default();
    let mut rng = Rng::for_record(seed, 0, 0, 0);
    let mut uniform = || rng.next_f64();
    let mut out = Vec::with_capacity(n * 4);
    for _ in 0..n {
        let b = rrc.sample(width, height, &mut uniform);
        out.extend([b.left, b.top, b.width, b.height]);
    }
    let array = Array::from_shape_vec((n, 4), out)
        .map_err(|e| PyRuntimeError::new_err(format!("shape: {e}")))?;
    Ok(array.into_pyarray(py).into_any())
}
