//! `tf.train.Example`, the protobuf message inside each record, and a typed layer on top.
//!
//! The message types are written by hand with `prost`'s derive (field numbers from
//! TensorFlow's `example.proto` and `feature.proto`), so no `protoc` is needed to build.
//! Numeric lists are written packed, as TensorFlow does, and accepted packed or unpacked.
//! Features are kept in a `BTreeMap`, so one Example always serialises to the same bytes.

use std::collections::BTreeMap;

use prost::Message;

use crate::{Error, Result};

/// `tensorflow.Example`: a map of named features.
#[derive(Clone, PartialEq, Message)]
pub struct Example {
    /// The features (field 1).
    #[prost(message, optional, tag = "1")]
    pub features: Option<Features>,
}

/// `tensorflow.Features`.
#[derive(Clone, PartialEq, Message)]
pub struct Features {
    /// Feature name → value (field 1).
    #[prost(btree_map = "string, message", tag = "1")]
    pub feature: BTreeMap<String, Feature>,
}

/// `tensorflow.Feature`: one of three list kinds.
#[derive(Clone, PartialEq, Message)]
pub struct Feature {
    /// The list, or `None` for a feature with no kind set.
    #[prost(oneof = "Kind", tags = "1, 2, 3")]
    pub kind: Option<Kind>,
}

/// The list inside a [`Feature`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    /// `bytes_list` (field 1).
    #[prost(message, tag = "1")]
    BytesList(BytesList),
    /// `float_list` (field 2).
    #[prost(message, tag = "2")]
    FloatList(FloatList),
    /// `int64_list` (field 3).
    #[prost(message, tag = "3")]
    Int64List(Int64List),
}

/// `tensorflow.BytesList`.
#[derive(Clone, PartialEq, Message)]
pub struct BytesList {
    /// The values (field 1).
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub value: Vec<Vec<u8>>,
}

/// `tensorflow.FloatList`.
#[derive(Clone, PartialEq, Message)]
pub struct FloatList {
    /// The values (field 1, packed).
    #[prost(float, repeated, tag = "1")]
    pub value: Vec<f32>,
}

/// `tensorflow.Int64List`.
#[derive(Clone, PartialEq, Message)]
pub struct Int64List {
    /// The values (field 1, packed).
    #[prost(int64, repeated, tag = "1")]
    pub value: Vec<i64>,
}

impl Kind {
    /// The list kind's name as in the protobuf: `bytes_list`, `float_list` or `int64_list`.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::BytesList(_) => "bytes_list",
            Kind::FloatList(_) => "float_list",
            Kind::Int64List(_) => "int64_list",
        }
    }

    /// The number of values in the list.
    pub fn len(&self) -> usize {
        match self {
            Kind::BytesList(list) => list.value.len(),
            Kind::FloatList(list) => list.value.len(),
            Kind::Int64List(list) => list.value.len(),
        }
    }

    /// Whether the list has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Feature {
    /// A `bytes_list` feature.
    pub fn bytes(values: impl IntoIterator<Item = Vec<u8>>) -> Self {
        Feature {
            kind: Some(Kind::BytesList(BytesList {
                value: values.into_iter().collect(),
            })),
        }
    }

    /// A `float_list` feature.
    pub fn floats(values: impl IntoIterator<Item = f32>) -> Self {
        Feature {
            kind: Some(Kind::FloatList(FloatList {
                value: values.into_iter().collect(),
            })),
        }
    }

    /// An `int64_list` feature.
    pub fn int64s(values: impl IntoIterator<Item = i64>) -> Self {
        Feature {
            kind: Some(Kind::Int64List(Int64List {
                value: values.into_iter().collect(),
            })),
        }
    }

    /// The list kind's name, or `empty` when no kind is set.
    pub fn kind_name(&self) -> &'static str {
        self.kind.as_ref().map_or("empty", Kind::name)
    }
}

impl Example {
    /// An Example with no features.
    pub fn new() -> Self {
        Example::default()
    }

    /// Adds (or replaces) a feature; for building an Example in one expression.
    pub fn with(mut self, name: impl Into<String>, feature: Feature) -> Self {
        self.insert(name, feature);
        self
    }

    /// Adds (or replaces) a feature.
    pub fn insert(&mut self, name: impl Into<String>, feature: Feature) {
        self.features
            .get_or_insert_with(Features::default)
            .feature
            .insert(name.into(), feature);
    }

    /// The features, by name (empty when the Example has none).
    pub fn feature_map(&self) -> impl Iterator<Item = (&str, &Feature)> {
        self.features
            .iter()
            .flat_map(|features| features.feature.iter().map(|(name, f)| (name.as_str(), f)))
    }

    /// The feature called `name`.
    pub fn get(&self, name: &str) -> Option<&Feature> {
        self.features.as_ref()?.feature.get(name)
    }

    /// Parses a record's payload.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        Ok(<Example as Message>::decode(bytes)?)
    }

    /// Serialises the Example.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    fn list<'a, T>(
        &'a self,
        name: &str,
        expected: &'static str,
        pick: impl FnOnce(&'a Kind) -> Option<&'a [T]>,
    ) -> Result<&'a [T]> {
        let feature = self.get(name).ok_or_else(|| Error::MissingFeature {
            name: name.to_owned(),
        })?;
        feature
            .kind
            .as_ref()
            .and_then(pick)
            .ok_or_else(|| Error::WrongFeatureType {
                name: name.to_owned(),
                expected,
                found: feature.kind_name(),
            })
    }

    /// The `bytes_list` values of feature `name`.
    pub fn bytes_list(&self, name: &str) -> Result<&[Vec<u8>]> {
        self.list(name, "bytes_list", |kind| match kind {
            Kind::BytesList(list) => Some(list.value.as_slice()),
            _ => None,
        })
    }

    /// The `float_list` values of feature `name`.
    pub fn float_list(&self, name: &str) -> Result<&[f32]> {
        self.list(name, "float_list", |kind| match kind {
            Kind::FloatList(list) => Some(list.value.as_slice()),
            _ => None,
        })
    }

    /// The `int64_list` values of feature `name`.
    pub fn int64_list(&self, name: &str) -> Result<&[i64]> {
        self.list(name, "int64_list", |kind| match kind {
            Kind::Int64List(list) => Some(list.value.as_slice()),
            _ => None,
        })
    }

    /// The single `bytes_list` value of feature `name` (TF's `FixedLenFeature([], tf.string)`).
    pub fn single_bytes(&self, name: &str) -> Result<&[u8]> {
        single(name, self.bytes_list(name)?).map(Vec::as_slice)
    }

    /// The single `int64_list` value of feature `name` (TF's `FixedLenFeature([], tf.int64)`).
    pub fn single_int64(&self, name: &str) -> Result<i64> {
        single(name, self.int64_list(name)?).copied()
    }
}

fn single<'a, T>(name: &str, values: &'a [T]) -> Result<&'a T> {
    match values {
        [value] => Ok(value),
        _ => Err(Error::WrongFeatureLength {
            name: name.to_owned(),
            expected: 1,
            found: values.len(),
        }),
    }
}

/// The record of an image dataset: JPEG bytes under `image` and a class index under `class`,
/// as the tutorial writes them; shards that keep images at their own size
/// (`shard --resize fit|keep`) add `height` and `width` (int64) beside them.
///
/// ```
/// use shardfeed_record_format::{ExampleKeys, ImageExample};
///
/// let record = ImageExample { image: vec![0xff, 0xd8, 0xff], class: 1, size: None };
/// let bytes = record.to_bytes();
/// assert_eq!(ImageExample::decode(&bytes)?, record);
/// let sized = ImageExample { size: Some((640, 480)), ..record };
/// assert_eq!(ImageExample::decode_with(&sized.to_bytes(), &ExampleKeys::SHARDFEED)?, sized);
/// # Ok::<(), shardfeed_record_format::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageExample {
    /// The encoded image (`image`: `bytes_list` with one value).
    pub image: Vec<u8>,
    /// The class index (`class`: `int64_list` with one value).
    pub class: i64,
    /// Width and height, where the record states them (`width`, `height`: int64).
    pub size: Option<(u32, u32)>,
}

/// Which features of an `Example` hold the image, its class and (optionally) its size:
/// shardfeed's (`image`, `class`, `width`, `height`), TensorFlow's image tools'
/// (`image/encoded`, `image/class/label`, `image/width`, `image/height`: the model garden's
/// ImageNet converter, TFDS exports), or any other names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExampleKeys {
    /// The encoded image (`bytes_list`, one value).
    pub image: std::borrow::Cow<'static, str>,
    /// The class (`int64_list`, one value).
    pub label: std::borrow::Cow<'static, str>,
    /// The width (`int64_list`, one value; optional in a record).
    pub width: std::borrow::Cow<'static, str>,
    /// The height (`int64_list`, one value; optional in a record).
    pub height: std::borrow::Cow<'static, str>,
}

impl ExampleKeys {
    /// shardfeed's keys (the tutorial's `image` and `class`).
    pub const SHARDFEED: ExampleKeys = ExampleKeys {
        image: std::borrow::Cow::Borrowed("image"),
        label: std::borrow::Cow::Borrowed("class"),
        width: std::borrow::Cow::Borrowed("width"),
        height: std::borrow::Cow::Borrowed("height"),
    };

    /// TensorFlow's image tools' keys (`image/encoded`, `image/class/label`).
    pub const TENSORFLOW: ExampleKeys = ExampleKeys {
        image: std::borrow::Cow::Borrowed("image/encoded"),
        label: std::borrow::Cow::Borrowed("image/class/label"),
        width: std::borrow::Cow::Borrowed("image/width"),
        height: std::borrow::Cow::Borrowed("image/height"),
    };

    /// Other names for the image and the class (no size features).
    pub fn named(image: impl Into<String>, label: impl Into<String>) -> ExampleKeys {
        ExampleKeys {
            image: image.into().into(),
            label: label.into().into(),
            width: std::borrow::Cow::Borrowed(""),
            height: std::borrow::Cow::Borrowed(""),
        }
    }

    /// The keys a reader names (`--image-key`, `--label-key`; Python `image_key=`,
    /// `label_key=`): with one named, the other is shardfeed's; with neither, `None` (the
    /// keys are detected from the records).
    pub fn named_or_detected(image: Option<&str>, label: Option<&str>) -> Option<ExampleKeys> {
        if image.is_none() && label.is_none() {
            return None;
        }
        Some(ExampleKeys::named(
            image.unwrap_or("image"),
            label.unwrap_or("class"),
        ))
    }

    /// The keys `example` uses: shardfeed's where it has an `image` feature, else
    /// TensorFlow's where it has `image/encoded`; `None` for neither.
    pub fn detect(example: &Example) -> Option<ExampleKeys> {
        [ExampleKeys::SHARDFEED, ExampleKeys::TENSORFLOW]
            .into_iter()
            .find(|keys| example.get(&keys.image).is_some())
    }
}

impl Default for ExampleKeys {
    fn default() -> Self {
        ExampleKeys::SHARDFEED
    }
}

impl ImageExample {
    /// The `image` feature's key.
    pub const IMAGE: &'static str = "image";
    /// The `class` feature's key.
    pub const CLASS: &'static str = "class";

    /// As a general [`Example`] with shardfeed's keys.
    pub fn to_example(&self) -> Example {
        let example = Example::new()
            .with(Self::IMAGE, Feature::bytes([self.image.clone()]))
            .with(Self::CLASS, Feature::int64s([self.class]));
        match self.size {
            None => example,
            Some((width, height)) => example
                .with("width", Feature::int64s([i64::from(width)]))
                .with("height", Feature::int64s([i64::from(height)])),
        }
    }

    /// Serialises the record's Example.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_example().to_bytes()
    }

    /// Reads `image` and `class` (and `width`/`height` where present) from an Example;
    /// other features are ignored.
    pub fn from_example(example: &Example) -> Result<Self> {
        ImageExample::from_example_with(example, &ExampleKeys::SHARDFEED)
    }

    /// Reads the image, class and size under `keys`; other features are ignored. A size
    /// feature that is present must be one int64 in `1..=u32::MAX`, and both or neither.
    pub fn from_example_with(example: &Example, keys: &ExampleKeys) -> Result<Self> {
        let image = example.single_bytes(&keys.image)?.to_vec();
        let class = example.single_int64(&keys.label)?;
        let side = |name: &str| -> Result<Option<u32>> {
            if name.is_empty() || example.get(name).is_none() {
                return Ok(None);
            }
            let value = example.single_int64(name)?;
            u32::try_from(value)
                .ok()
                .filter(|&v| v > 0)
                .map(Some)
                .ok_or_else(|| Error::BadFeatureValue {
                    name: name.to_owned(),
                    value,
                    expected: "a size of 1 to 4294967295 pixels",
                })
        };
        let size = match (side(&keys.width)?, side(&keys.height)?) {
            (Some(width), Some(height)) => Some((width, height)),
            _ => None,
        };
        Ok(ImageExample { image, class, size })
    }

    /// Parses a record's payload (shardfeed's keys).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        ImageExample::from_example(&Example::decode(bytes)?)
    }

    /// Parses a record's payload under `keys`.
    pub fn decode_with(bytes: &[u8], keys: &ExampleKeys) -> Result<Self> {
        ImageExample::from_example_with(&Example::decode(bytes)?, keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_mistyped_features_name_the_feature() {
        let example = Example::new()
            .with("image", Feature::int64s([1]))
            .with("class", Feature::int64s([1, 2]));
        let err = ImageExample::from_example(&example).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"feature "image" is int64_list, expected bytes_list"#
        );

        let example = Example::new().with("image", Feature::bytes([vec![1]]));
        let err = ImageExample::from_example(&example).unwrap_err();
        assert_eq!(err.to_string(), r#"feature "class" is missing"#);

        let example = example.with("class", Feature::int64s([1, 2]));
        let err = ImageExample::from_example(&example).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"feature "class" has 2 values, expected 1"#
        );

        let example = example.with("class", Feature { kind: None });
        let err = ImageExample::from_example(&example).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"feature "class" is empty, expected int64_list"#
        );
    }

    #[test]
    fn unpacked_and_packed_int64_lists_decode_alike() {
        // Example{features{feature{key:"class" value{int64_list{value:[5, 300]}}}}} by hand,
        // with the int64 list unpacked: two separate varint fields (tag 0x08).
        let int64_list_unpacked = [0x08, 5, 0x08, 0xac, 0x02];
        let int64_list_packed = [0x0a, 3, 5, 0xac, 0x02];
        for list in [&int64_list_unpacked[..], &int64_list_packed[..]] {
            let feature = [&[0x1a, list.len() as u8][..], list].concat();
            let entry = [
                &[0x0a, 5][..],
                b"class",
                &[0x12, feature.len() as u8],
                &feature,
            ]
            .concat();
            let features = [&[0x0a, entry.len() as u8][..], &entry].concat();
            let example = [&[0x0a, features.len() as u8][..], &features].concat();
            let decoded = Example::decode(&example).unwrap();
            assert_eq!(decoded.int64_list("class").unwrap(), [5, 300]);
        }
    }

    #[test]
    fn numeric_lists_are_written_packed() {
        let bytes = Feature::int64s([1, 2, 3]).encode_to_vec();
        // field 3 (int64_list), then field 1 of Int64List with wire type 2 (packed).
        assert_eq!(bytes, [0x1a, 5, 0x0a, 3, 1, 2, 3]);
    }

    #[test]
    fn garbage_is_an_invalid_example() {
        let err = Example::decode(&[0xff, 0xff, 0xff]).unwrap_err();
        assert!(matches!(err, Error::InvalidExample(_)), "{err}");
    }
}
